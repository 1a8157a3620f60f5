//! The Go template interpreter on Ollama's library templates. The expected prompts are
//! the ones Ollama's own template tests expect (`template/testdata`, and its
//! `TestExecuteWithMessages` cases), or worked out by hand from Go's rules.

use super::*;
use crate::template::OrderedJson;

const QWEN25: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ollama/qwen2.5.gotmpl"
));
const LLAMA31: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ollama/llama3.1.gotmpl"
));
const MISTRAL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ollama/mistral.gotmpl"
));
const GEMMA3: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ollama/gemma3.gotmpl"
));

const ALPACA: &str = "{{- $system := \"\" }}\n{{- range .Messages }}\n{{- if eq .Role \"system\" }}\n{{- if not $system }}{{ $system = .Content }}\n{{- else }}{{ $system = printf \"%s\\n\\n%s\" $system .Content }}\n{{- end }}\n{{- else if eq .Role \"user\" }}\n{{- if $system }}{{ $system }}\n\n{{ $system = \"\" }}\n{{- end }}### Instruction:\n{{ .Content }}\n\n{{ else if eq .Role \"assistant\" }}### Response:\n{{ .Content }}\n\n{{ end }}\n{{- end }}### Response:\n";

fn m(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

/// Ollama's test conversation `system-user-assistant-user`.
fn conversation() -> Vec<Message> {
    vec![
        m("system", "You are a helpful assistant."),
        m("user", "Hello, how are you?"),
        m("assistant", "I'm doing great. How can I help you today?"),
        m("user", "I'd like to show off how chat templating works!"),
    ]
}

fn render(source: &str, messages: &[Message]) -> String {
    GoTemplate::parse(source)
        .expect("parses")
        .render(messages, None)
        .expect("renders")
}

fn weather_tools() -> OrderedJson {
    tools_from(serde_json::json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city"}},
                "required": ["city"]
            }
        }
    }]))
}

/// Client JSON as the chat handler receives it: keys in the order written. (The
/// `json!` macro keeps them only where serde_json sorts none, so order-sensitive
/// tests write the JSON text.)
fn tools_from(json: serde_json::Value) -> OrderedJson {
    serde_json::from_str(&json.to_string()).unwrap()
}

fn tool_call_conversation() -> Vec<Message> {
    let call: OrderedJson = serde_json::from_str(
        r#"[{"function": {"name": "get_weather", "arguments": {"unit": "C", "city": "Paris"}}}]"#,
    )
    .unwrap();
    vec![
        m("user", "Weather in Paris?"),
        Message {
            tool_calls: Some(call),
            ..m("assistant", "")
        },
        Message {
            tool_name: Some("get_weather".into()),
            ..m("tool", "22 degrees")
        },
    ]
}

/// This version of the template trims the blank line after the system text that the
/// version in Ollama's testdata keeps; the rest is Ollama's expected prompt.
#[test]
fn gemma3_renders_as_ollama_expects() {
    assert_eq!(
        render(GEMMA3, &conversation()),
        "<start_of_turn>user\nYou are a helpful assistant.\nHello, how are you?<end_of_turn>\n<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n<start_of_turn>model\n\n"
    );
}

#[test]
fn alpaca_assigns_variables_and_calls_printf() {
    assert_eq!(
        render(ALPACA, &conversation()),
        "You are a helpful assistant.\n\n### Instruction:\nHello, how are you?\n\n### Response:\nI'm doing great. How can I help you today?\n\n### Instruction:\nI'd like to show off how chat templating works!\n\n### Response:\n"
    );
}

#[test]
fn legacy_templates_render_each_exchange_and_stop_at_the_response() {
    let with_system = |system: bool| {
        let mut messages = vec![
            m("user", "Hello friend!"),
            m("assistant", "Hello human!"),
            m("user", "What is your name?"),
        ];
        if system {
            messages.insert(0, m("system", "You are a helpful assistant!"));
        }
        messages
    };
    let templates = [
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] ",
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}",
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n{{- if eq .Role \"user\" }}{{ .Content }}[/INST] {{ else if eq .Role \"assistant\" }}{{ .Content }}[INST] {{ end }}\n{{- end }}",
    ];
    for template in templates {
        assert_eq!(
            render(template, &with_system(false)),
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            "{template}"
        );
        assert_eq!(
            render(template, &with_system(true)),
            "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            "{template}"
        );
    }
    let chatml = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n";
    assert_eq!(
        render(chatml, &with_system(true)),
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n"
    );
    // A prefilled answer continues where the assistant's text ends.
    let mut prefill = with_system(false);
    prefill.push(m("assistant", "My name is Ollama and I"));
    assert_eq!(
        render("[INST] {{ .Prompt }}[/INST] {{ .Response }}", &prefill),
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"
    );
}

#[test]
fn qwen25_puts_tools_in_the_system_turn_as_go_json() {
    let template = GoTemplate::parse(QWEN25).unwrap();
    let messages = [
        m("system", "You are helpful."),
        m("user", "Weather in Paris?"),
    ];
    let prompt = template.render(&messages, Some(&weather_tools())).unwrap();
    let function = r#"{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"The city"}}}}"#;
    let expected = format!(
        "<|im_start|>system\nYou are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{{\"type\": \"function\", \"function\": {function}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(prompt, expected);
}

#[test]
fn qwen25_writes_tool_calls_and_results() {
    let prompt = render(QWEN25, &tool_call_conversation());
    assert_eq!(
        prompt,
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\":\"C\",\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n22 degrees\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen25_without_messages_uses_its_legacy_branch_for_generate() {
    // A template that names .Messages always gets them; a one-turn generate request
    // is a system and a user message.
    let prompt = render(QWEN25, &[m("user", "Hi")]);
    assert_eq!(
        prompt,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn llama31_prints_each_tool_as_json_before_the_last_question() {
    let template = GoTemplate::parse(LLAMA31).unwrap();
    let prompt = template
        .render(&[m("user", "Weather in Paris?")], Some(&weather_tools()))
        .unwrap();
    let tool = r#"{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"The city"}}}}}"#;
    assert!(
        prompt.starts_with(
            "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        ),
        "{prompt}"
    );
    assert!(prompt.contains(&format!("Do not use variables.\n\n{tool}\n\nQuestion: Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")), "{prompt}");
    let calls = render(LLAMA31, &tool_call_conversation());
    assert!(calls.contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"unit\":\"C\",\"city\":\"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n22 degrees<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), "{calls}");
}

#[test]
fn mistral_prints_the_tool_list_and_the_system_in_the_last_turn() {
    let template = GoTemplate::parse(MISTRAL).unwrap();
    let prompt = template
        .render(&conversation(), Some(&weather_tools()))
        .unwrap();
    assert!(prompt.starts_with("[INST] Hello, how are you?[/INST] I'm doing great. How can I help you today?</s>[AVAILABLE_TOOLS] [{\"type\":\"function\""), "{prompt}");
    assert!(prompt.ends_with("}}}}}][/AVAILABLE_TOOLS][INST] You are a helpful assistant.\n\nI'd like to show off how chat templating works![/INST] "), "{prompt}");
}

#[test]
fn messages_of_one_role_in_a_row_are_merged_and_systems_joined() {
    let template = "{{ .System }}|{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}";
    let messages = [
        m("system", "a"),
        m("system", "b"),
        m("user", "x"),
        m("user", "y"),
    ];
    assert_eq!(
        render(template, &messages),
        "a\n\nb|system=a\n\nb;user=x\n\ny;"
    );
}

#[test]
fn a_template_without_response_gets_it_appended() {
    assert_eq!(render("{{ .Prompt }}", &[m("user", "Hi")]), "Hi");
    let t = GoTemplate::parse("{{ .System }} {{ .Prompt }}").unwrap();
    assert!(t.uses("response") && t.uses("system") && !t.uses("messages"));
}

#[test]
fn go_syntax_is_told_from_jinja() {
    for go in [
        QWEN25,
        LLAMA31,
        MISTRAL,
        GEMMA3,
        ALPACA,
        "{{ .Prompt }}",
        "{{- range .Messages }}{{ end }}",
    ] {
        assert!(looks_like_go(go), "{go}");
    }
    for jinja in [
        "{% for message in messages %}{{ message.content }}{% endfor %}",
        "{{ bos_token }}{{ messages[0]['content'] }}",
        "plain text",
    ] {
        assert!(!looks_like_go(jinja), "{jinja}");
    }
}

#[test]
fn builtins_behave_as_go() {
    let data = Value::Nil;
    let run = |source: &str| GoTemplate::parse(source).unwrap().execute(&data);
    assert_eq!(run("{{ len \"héllo\" }}").unwrap(), "6");
    assert_eq!(run("{{ slice \"hello\" 1 3 }}").unwrap(), "el");
    assert_eq!(run("{{ index (slice \"abc\" 1) 0 }}").unwrap(), "98");
    assert_eq!(
        run("{{ and 1 0 2 }}|{{ or 0 \"\" \"x\" }}|{{ not 0 }}").unwrap(),
        "0|x|true"
    );
    assert_eq!(
        run("{{ eq 1 2 1 }}{{ ne \"a\" \"b\" }}{{ lt 1 2.5 }}{{ ge 2 2 }}").unwrap(),
        "truetruetruetrue"
    );
    assert_eq!(
        run("{{ json \"<a & b>\" }}").unwrap(),
        r#""\u003ca \u0026 b\u003e""#
    );
    assert_eq!(
        run("{{ print 1 2 \"x\" 3 }}|{{ printf \"%d-%s-%q\" 7 \"s\" \"q\" }}").unwrap(),
        "1 2x3|7-s-\"q\""
    );
    assert_eq!(
        run("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}").unwrap(),
        "2"
    );
    assert_eq!(
        run("{{ range $i, $v := 3 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $v }}{{ end }}")
            .unwrap(),
        "02"
    );
    assert_eq!(
        run("{{ range 5 }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}").unwrap(),
        "01"
    );
    assert_eq!(
        run("{{ with \"\" }}x{{ else with \"y\" }}{{ . }}{{ end }}").unwrap(),
        "y"
    );
    assert_eq!(
        run("{{ if 0 }}a{{ else if 1 }}b{{ else }}c{{ end }}").unwrap(),
        "b"
    );
    assert_eq!(run("a  {{- /* comment */ -}}  b").unwrap(), "ab");
    assert_eq!(run("{{ \"x\" | printf \"%s!\" }}").unwrap(), "x!");
    assert_eq!(
        run("{{ 1.5 }} {{ 2.0 }} {{ -3 }} {{ 0x10 }} {{ 'a' }} {{ `raw\\n` }}").unwrap(),
        "1.5 2 -3 16 97 raw\\n"
    );
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("line one\n{{ if .X }}\nno end", 2, "missing {{end}}"),
        ("ok\n\n{{ .X", 3, "unclosed action"),
        ("{{ end }}", 1, "unexpected {{end}}"),
        ("a\n{{ define \"x\" }}{{ end }}", 2, "not supported"),
        ("{{ \"unterminated }}", 1, "unterminated"),
        ("\n{{ 1 2 }}", 2, "non-function"),
        ("\n\n{{ undefined_fn 1 }}", 3, "not defined"),
        ("{{ .A.B }}\n{{ $nope }}", 2, "undefined variable"),
        ("{{ index \"abc\" 10 }}", 1, "out of range"),
        ("{{ slice \"é\" 0 1 }}", 1, "character"),
        ("{{ eq .Messages 1 }}", 1, "comparison"),
    ];
    for (source, line, what) in cases {
        let err = GoTemplate::parse(source)
            .and_then(|t| t.render(&[m("user", "x")], None))
            .expect_err(source);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("line {line}: ")),
            "{source:?}: {text}"
        );
        assert!(text.contains(what), "{source:?}: {text}");
    }
}

#[test]
fn malformed_input_never_panics() {
    let deep = "{{ if 1 }}".repeat(200) + &"{{ end }}".repeat(200);
    let parens = "{{ ".to_owned() + &"(".repeat(500) + "1" + &")".repeat(500) + " }}";
    let mut sources = vec![deep, parens];
    for t in [QWEN25, LLAMA31, MISTRAL, GEMMA3, ALPACA] {
        let mut ends: Vec<usize> = t.char_indices().map(|(i, _)| i).collect();
        ends.push(t.len());
        sources.extend(ends.iter().step_by(3).map(|&i| t[..i].to_owned()));
        sources.extend(ends.iter().step_by(7).map(|&i| t[i..].to_owned()));
    }
    for junk in [
        "{{",
        "}}",
        "{{-",
        "{{- -}}",
        "{{ $ }}",
        "{{ . . }}",
        "{{ (}}",
        "{{ ) }}",
        "{{ | }}",
        "{{ := }}",
        "{{ $a, $b, $c := 1 }}",
        "{{ 1e999 }}",
        "{{ '' }}",
        "{{ '\\x4' }}",
        "{{ \"\\u12\" }}",
        "{{ else }}",
        "{{ range . }}{{ else }}{{ else }}{{ end }}",
        "{{/* x",
        "{{ -}}",
    ] {
        sources.push(junk.to_owned());
    }
    let tools = weather_tools();
    for source in sources {
        if let Ok(t) = GoTemplate::parse(&source) {
            let _ = t.render(&conversation(), Some(&tools));
            let _ = t.render(&tool_call_conversation(), None);
        }
    }
}

#[test]
fn a_go_template_that_fails_gives_way_to_the_ggufs_jinja() {
    use crate::template::{ChatTemplate, TemplateError};
    let jinja = || {
        ChatTemplate::with_tokens(
            "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}",
            Default::default(),
        )
        .ok()
    };
    let messages = [m("user", "Hi")];

    let (template, note) = ChatTemplate::with_fallback("m", "{{ if .Messages }}", jinja()).unwrap();
    assert!(!template.is_go());
    assert!(note.unwrap().contains("line 1"));
    assert_eq!(template.render(&messages, true).unwrap(), "[user]Hi");

    let fails_at_render = "{{ range .Messages }}{{ index .Content 99 }}{{ end }}";
    let (template, note) = ChatTemplate::with_fallback("m", fails_at_render, jinja()).unwrap();
    assert!(template.is_go() && note.is_none());
    assert_eq!(template.render(&messages, true).unwrap(), "[user]Hi");
    assert!(problem(fails_at_render).is_some());
    assert!(problem(QWEN25).is_none());

    let (template, _) = ChatTemplate::with_fallback("m", fails_at_render, None).unwrap();
    assert!(matches!(
        template.render(&messages, true),
        Err(TemplateError::Go(_))
    ));
    assert!(ChatTemplate::with_fallback("m", "{{ if .Messages }}", None).is_err());
}

#[test]
fn newer_ollama_functions_give_dates_and_typescript_types() {
    let tools = tools_from(
        serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": ["string", "null"]},
                "c": {"anyOf": [{"type": "boolean"}, {"type": "array"}]},
                "d": {"description": "untyped"}
            }
        }}}]),
    );
    let template = "{{ range .Tools }}{{ range $name, $p := .Function.Parameters.Properties }}{{ $name }}: {{ $p | toTypeScriptType }};{{ end }}{{ end }}{{ range .Messages }}{{ end }}{{ len currentDate }}";
    let out = GoTemplate::parse(template)
        .unwrap()
        .render(&[m("user", "x")], Some(&tools))
        .unwrap();
    assert_eq!(
        out,
        "a: number;b: string | null;c: boolean | any[];d: any;10"
    );
}

#[test]
fn a_suffix_fills_in_the_middle_through_the_template() {
    // Ollama's test: the same template renders messages without the suffix branch.
    let template = GoTemplate::parse(
        "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}",
    )
    .unwrap();
    let insert = template
        .render_insert("def add(", "return x")
        .unwrap()
        .unwrap();
    assert_eq!(insert, "<PRE> def add( <SUF>return x <MID>");
    assert_eq!(
        template.render(&[m("user", "hello")], None).unwrap(),
        "hello"
    );
    assert!(
        GoTemplate::parse(QWEN25)
            .unwrap()
            .render_insert("a", "b")
            .is_none()
    );
}
