//! The expected strings come from scripts/make-template-refs.py (Python jinja2 3.1.6
//! rendering the same template text as transformers' `apply_chat_template` does); they are
//! pasted here verbatim. Rerun the script and compare when a template or case changes.

use e2e::TestModel;
use gguf::GgufFile;

use super::*;

/// Gemma 3's instruction-tuned template; the Gemma 3 270M test GGUF (a base model) has none.
const GEMMA3_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/gemma3-chat-template.jinja"
));

fn system() -> Message {
    Message::new("system", "You are a terse assistant.")
}

fn user() -> Message {
    Message::new("user", "What is the capital of France?")
}

fn conversation() -> Vec<Message> {
    vec![
        system(),
        user(),
        Message::new("assistant", "  Paris.\n"),
        Message::new("user", "And of Italy? Answer with \"one\" word, ünïcödé 🙂"),
    ]
}

fn smollm2() -> ChatTemplate {
    let file = GgufFile::open(TestModel::SmolLm2.path()).expect("SmolLM2 opens");
    ChatTemplate::from_gguf(&file)
        .expect("SmolLM2's template compiles")
        .expect("SmolLM2 has a template")
}

fn gemma3_tokens() -> SpecialTokens {
    let file = GgufFile::open(TestModel::Gemma3.path()).expect("Gemma 3 opens");
    SpecialTokens::from_metadata(file.metadata()).expect("Gemma 3's special tokens")
}

fn gemma3() -> ChatTemplate {
    ChatTemplate::with_tokens(GEMMA3_TEMPLATE, gemma3_tokens()).expect("Gemma 3's template")
}

/// Gemma's template with a tokenizer that does not add BOS: the text keeps its `<bos>`.
fn gemma3_without_added_bos() -> ChatTemplate {
    let tokens = SpecialTokens {
        adds_bos: false,
        ..gemma3_tokens()
    };
    ChatTemplate::with_tokens(GEMMA3_TEMPLATE, tokens).expect("Gemma 3's template")
}

#[test]
fn special_tokens_come_from_the_gguf() {
    let smollm = smollm2();
    assert_eq!(
        smollm.tokens(),
        &SpecialTokens {
            bos: Some("<|im_start|>".into()),
            eos: Some("<|im_end|>".into()),
            adds_bos: false,
        }
    );
    assert_eq!(
        gemma3_tokens(),
        SpecialTokens {
            bos: Some("<bos>".into()),
            eos: Some("<eos>".into()),
            adds_bos: true,
        }
    );
    let file = GgufFile::open(TestModel::Gemma3.path()).expect("Gemma 3 opens");
    assert!(
        ChatTemplate::from_gguf(&file).unwrap().is_none(),
        "the Gemma 3 base GGUF has no template"
    );
}

#[test]
fn smollm2_matches_jinja2() {
    let t = smollm2();
    let default_system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    let cases: [(Vec<Message>, bool, String); 5] = [
        (
            vec![user()],
            true,
            format!("{default_system}<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
        ),
        (
            vec![user()],
            false,
            format!("{default_system}<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"),
        ),
        (
            vec![system(), user()],
            true,
            "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n".into(),
        ),
        (
            conversation(),
            true,
            "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n  Paris.\n<|im_end|>\n<|im_start|>user\nAnd of Italy? Answer with \"one\" word, ünïcödé 🙂<|im_end|>\n<|im_start|>assistant\n".into(),
        ),
        (
            conversation(),
            false,
            "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n  Paris.\n<|im_end|>\n<|im_start|>user\nAnd of Italy? Answer with \"one\" word, ünïcödé 🙂<|im_end|>\n".into(),
        ),
    ];
    for (messages, add_generation_prompt, expected) in cases {
        assert_eq!(
            t.render(&messages, add_generation_prompt).unwrap(),
            expected,
            "{} messages, add_generation_prompt={add_generation_prompt}",
            messages.len()
        );
    }
}

#[test]
fn smollm2_keeps_its_leading_bos_text_because_it_does_not_add_bos() {
    // SmolLM2's BOS is `<|im_start|>`, which every rendering starts with; its tokenizer
    // adds no BOS, so the text must reach the runner whole.
    let text = smollm2().render(&[user()], true).unwrap();
    assert!(text.starts_with("<|im_start|>system\n"), "{text:?}");
}

#[test]
fn gemma3_matches_jinja2_less_the_leading_bos() {
    // jinja2's renderings all start with "<bos>"; Gemma's tokenizer adds BOS itself, so
    // the supervisor drops that one.
    let cases: [(Vec<Message>, bool, &str); 5] = [
        (
            vec![user()],
            true,
            "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
        ),
        (
            vec![user()],
            false,
            "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n",
        ),
        (
            vec![system(), user()],
            true,
            "<bos><start_of_turn>user\nYou are a terse assistant.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
        ),
        (
            conversation(),
            true,
            "<bos><start_of_turn>user\nYou are a terse assistant.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n<start_of_turn>user\nAnd of Italy? Answer with \"one\" word, ünïcödé 🙂<end_of_turn>\n<start_of_turn>model\n",
        ),
        (
            conversation(),
            false,
            "<bos><start_of_turn>user\nYou are a terse assistant.\n\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n<start_of_turn>user\nAnd of Italy? Answer with \"one\" word, ünïcödé 🙂<end_of_turn>\n",
        ),
    ];
    let stripped = gemma3();
    let kept = gemma3_without_added_bos();
    for (messages, add_generation_prompt, jinja2) in cases {
        let what = format!(
            "{} messages, add_generation_prompt={add_generation_prompt}",
            messages.len()
        );
        let expected = jinja2.strip_prefix("<bos>").unwrap();
        assert_eq!(
            stripped.render(&messages, add_generation_prompt).unwrap(),
            expected,
            "{what}"
        );
        assert_eq!(
            kept.render(&messages, add_generation_prompt).unwrap(),
            jinja2,
            "{what}"
        );
    }
}

#[test]
fn only_one_leading_bos_is_dropped() {
    let t = ChatTemplate::new("{{ bos_token }}{{ bos_token }}x", Some("<s>"), None, true).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "<s>x");
    let t = ChatTemplate::new("x{{ bos_token }}", Some("<s>"), None, true).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "x<s>");
}

#[test]
fn raise_exception_is_a_clear_error() {
    // Gemma's template refuses two user turns in a row (jinja2 raises the same message).
    let err = gemma3().render(&[user(), user()], true).unwrap_err();
    assert_eq!(
        err,
        TemplateError::Raised(
            "Conversation roles must alternate user/assistant/user/assistant/...".into()
        )
    );
    assert_eq!(
        err.to_string(),
        "the chat template rejected the messages: Conversation roles must alternate \
         user/assistant/user/assistant/..."
    );
    // SmolLM2's accepts them, as jinja2 does.
    assert!(smollm2().render(&[user(), user()], true).is_ok());
}

#[test]
fn invalid_jinja_is_an_error_at_compile_time() {
    for (source, needle) in [
        ("{% for m in messages %}{{ m.content }}", "end of block"),
        ("{{ messages[0].content ", "chat_template:1"),
        ("{% if %}x{% endif %}", "chat_template:1"),
        ("{% frobnicate %}", "frobnicate"),
        ("line one\n{{ 1 + }}", "chat_template:2"),
    ] {
        match ChatTemplate::new(source, None, None, false) {
            Err(TemplateError::Syntax(detail)) => {
                assert!(detail.contains(needle), "{source:?}: {detail}")
            }
            other => panic!("{source:?} compiled: {other:?}"),
        }
    }
}

#[test]
fn render_errors_are_errors_not_panics() {
    for source in [
        "{{ messages | no_such_filter }}",
        "{{ messages[0].content + 1 }}",
        "{{ no_such_function() }}",
        "{{ strftime_now('%Q %') }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ messages[0].content.no_such_method() }}",
        "{{ messages | tojson(indent=2, bogus=1) }}",
        "{% for i in range(100000000) %}{% endfor %}",
    ] {
        let t = match ChatTemplate::new(source, None, None, false) {
            Ok(t) => t,
            Err(e) => panic!("{source:?} should compile: {e}"),
        };
        match t.render(&[user()], true) {
            Err(TemplateError::Render(detail)) => {
                assert!(detail.contains("chat_template:1"), "{source:?}: {detail}")
            }
            other => panic!("{source:?}: {other:?}"),
        }
    }
}

#[test]
fn tojson_python_methods_and_whitespace_match_jinja2() {
    // The `extra/*` lines of scripts/make-template-refs.py, rendered over conversation().
    let cases = [
        (
            "{{ messages | tojson }}|{{ messages[0] | tojson(indent=2) }}|{{ {'b': [1, 2.5, none, true, 'x\\ny'], 'a': {}} | tojson(sort_keys=true) }}|{{ [] | tojson(indent=2) }}",
            "[{\"role\": \"system\", \"content\": \"You are a terse assistant.\"}, {\"role\": \"user\", \"content\": \"What is the capital of France?\"}, {\"role\": \"assistant\", \"content\": \"  Paris.\\n\"}, {\"role\": \"user\", \"content\": \"And of Italy? Answer with \\\"one\\\" word, ünïcödé 🙂\"}]|{\n  \"role\": \"system\",\n  \"content\": \"You are a terse assistant.\"\n}|{\"a\": {}, \"b\": [1, 2.5, null, true, \"x\\ny\"]}|[]",
        ),
        (
            "{% for m in messages %}[{{ m.content.strip() }}|{{ m.role.startswith('ass') }}|{{ m.content.split(' ')[0] | upper }}|{{ m['content'].replace('a', 'A').rstrip() }}|{{ m.get('role') }}|{{ m.get('tool_calls') }}|{% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}]\n{% endfor %}",
            "[You are a terse assistant.|False|YOU|You Are A terse AssistAnt.|system|None|role=6;content=26;]\n[What is the capital of France?|False|WHAT|WhAt is the cApitAl of FrAnce?|user|None|role=4;content=30;]\n[Paris.|True||  PAris.|assistant|None|role=9;content=9;]\n[And of Italy? Answer with \"one\" word, ünïcödé 🙂|False|AND|And of ItAly? Answer with \"one\" word, ünïcödé 🙂|user|None|role=4;content=47;]\n",
        ),
        (
            "{% for m in messages %}\n    {% if m.role == 'user' %}\n        U:{{ m.content }}\n    {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}\n",
            "        U:What is the capital of France?\n        U:And of Italy? Answer with \"one\" word, ünïcödé 🙂\nA:",
        ),
    ];
    for (source, expected) in cases {
        let t = ChatTemplate::new(source, None, None, false).unwrap();
        assert_eq!(
            t.render(&conversation(), true).unwrap(),
            expected,
            "{source}"
        );
    }
}

#[test]
fn tojson_options() {
    let render = |source: &str| {
        ChatTemplate::new(source, None, None, false)
            .unwrap()
            .render(&[], false)
            .unwrap()
    };
    // json.dumps(..., ensure_ascii=True) and separators=(",", ":").
    assert_eq!(
        render("{{ 'é🙂<' | tojson(ensure_ascii=true) }}"),
        r#""\u00e9\ud83d\ude42<""#
    );
    assert_eq!(
        render("{{ {'a': [1, 2]} | tojson(separators=[',', ':']) }}"),
        r#"{"a":[1,2]}"#
    );
    assert_eq!(
        render("{{ {'a': [1, {}]} | tojson(indent='\t') }}"),
        "{\n\t\"a\": [\n\t\t1,\n\t\t{}\n\t]\n}"
    );
}

#[test]
fn strftime_now_formats_the_local_time() {
    let t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", None, None, false).unwrap();
    let before = chrono::Local::now().format("%Y-%m-%d").to_string();
    let text = t.render(&[], false).unwrap();
    let after = chrono::Local::now().format("%Y-%m-%d").to_string();
    assert!(text == before || text == after, "{text}");
}

#[test]
fn missing_special_tokens_render_as_empty_text() {
    let t = ChatTemplate::new("[{{ bos_token }}|{{ eos_token }}]", None, None, true).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "[|]");
}

/// Tokenizer metadata built in code: `<s>` is BOS (1), `</s>` EOS (2).
fn metadata(model: &str, add_bos: Option<bool>, template: Option<&str>) -> Metadata {
    let mut md = Metadata::new();
    md.insert(keys::TOKENIZER_MODEL, model);
    md.insert(keys::TOKENIZER_TOKENS, vec!["<unk>", "<s>", "</s>"]);
    md.insert(keys::TOKENIZER_BOS_ID, 1u32);
    md.insert(keys::TOKENIZER_EOS_ID, 2u32);
    if let Some(flag) = add_bos {
        md.insert(keys::TOKENIZER_ADD_BOS, flag);
    }
    if let Some(source) = template {
        md.insert(keys::TOKENIZER_CHAT_TEMPLATE, source);
    }
    md
}

#[test]
fn the_add_bos_rule_follows_the_runner_tokenizer() {
    for (model, flag, adds) in [
        ("llama", None, true),
        ("gpt2", None, false),
        ("llama", Some(false), false),
        ("gpt2", Some(true), true),
    ] {
        let tokens = SpecialTokens::from_metadata(&metadata(model, flag, None)).unwrap();
        assert_eq!(tokens.adds_bos, adds, "{model} {flag:?}");
        assert_eq!(tokens.bos.as_deref(), Some("<s>"));
        assert_eq!(tokens.eos.as_deref(), Some("</s>"));
        let template =
            ChatTemplate::from_metadata(&metadata(model, flag, Some("{{ bos_token }}x")))
                .unwrap()
                .unwrap();
        let expected = if adds { "x" } else { "<s>x" };
        assert_eq!(
            template.render(&[], false).unwrap(),
            expected,
            "{model} {flag:?}"
        );
    }
}

#[test]
fn broken_tokenizer_metadata_is_an_error() {
    let mut md = metadata("llama", None, Some("x"));
    md.insert(keys::TOKENIZER_BOS_ID, 7u32);
    assert_eq!(
        ChatTemplate::from_metadata(&md).unwrap_err(),
        TemplateError::Metadata("bos token id 7 is outside the vocabulary of 3 tokens".into())
    );
    let mut md = metadata("llama", None, Some("x"));
    md.insert(keys::TOKENIZER_ADD_BOS, "yes");
    let err = ChatTemplate::from_metadata(&md).unwrap_err();
    assert!(err.to_string().contains(keys::TOKENIZER_ADD_BOS), "{err}");
    let md = metadata("llama", None, Some("{% if %}"));
    assert!(matches!(
        ChatTemplate::from_metadata(&md),
        Err(TemplateError::Syntax(_))
    ));
}

#[test]
fn a_chat_template_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatTemplate>();
}

#[test]
fn messages_deserialize_from_ollama_json() {
    let messages: Vec<Message> = serde_json::from_str(
        r#"[{"role": "user", "content": "hi", "images": []}, {"role": "assistant"}]"#,
    )
    .unwrap();
    assert_eq!(
        messages,
        [Message::new("user", "hi"), Message::new("assistant", "")]
    );
}

#[test]
fn tools_tool_calls_and_tool_names_reach_the_template() {
    let source = "{{ tools is none }}|{% for t in tools or [] %}{{ t.function.name }}{% endfor %}|\
                  {% for m in messages %}{% for c in m.tool_calls or [] %}\
                  {{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}\
                  {% if m.tool_name %}{{ m | tojson }}{% endif %}{% endfor %}";
    let t = ChatTemplate::new(source, None, None, false).unwrap();
    let call = Message {
        tool_calls: Some(ordered(
            r#"[{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]"#,
        )),
        ..Message::new("assistant", "")
    };
    let answer = Message {
        tool_name: Some("get_weather".into()),
        ..Message::new("tool", "22 C")
    };
    let tools = ordered(r#"[{"type": "function", "function": {"name": "get_weather"}}]"#);
    assert_eq!(
        t.render_with_tools(&[call.clone(), answer.clone()], Some(&tools), false)
            .unwrap(),
        "False|get_weather|get_weather(Paris)\
         {\"role\": \"tool\", \"content\": \"22 C\", \"tool_name\": \"get_weather\"}"
    );
    // Without tools the template sees none, as transformers passes it.
    assert!(
        t.render(&[call, answer], false)
            .unwrap()
            .starts_with("True||")
    );
}

fn ordered(json: &str) -> OrderedJson {
    serde_json::from_str(json).unwrap()
}

#[test]
fn tool_json_keeps_the_clients_key_order() {
    let t = ChatTemplate::new(
        "{{ tools | tojson }}|{{ messages[0].tool_calls | tojson }}",
        None,
        None,
        false,
    )
    .unwrap();
    let tools = r#"[{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "required": ["z", "a"], "properties": {"z": {}, "a": {}}}}}]"#;
    let calls = r#"[{"function": {"name": "f", "arguments": {"z": 1, "a": 2.5}}}]"#;
    let call = Message {
        tool_calls: Some(ordered(calls)),
        ..Message::new("assistant", "")
    };
    assert_eq!(
        t.render_with_tools(&[call], Some(&ordered(tools)), false)
            .unwrap(),
        format!("{tools}|{calls}")
    );
}
