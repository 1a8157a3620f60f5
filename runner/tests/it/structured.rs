//! Structured output on the real models: the constrained sampler over their real
//! vocabularies, and the 20 schemas of `data/json-schemas.json` generated end to end
//! through `ollama-runner serve`, every output parsed and validated with `jsonschema`.

use std::sync::Arc;

use e2e::TestModel;
use ollama_proto::runner as pb;
use runner::grammar::{Constraint, Grammars};
use runner::sample::{Sampler, SamplerOptions, SamplerRng};
use runner::tokenizer::Tokenizer;
use serde_json::Value;
use tonic::Code;

use crate::served::{self, Served};
use crate::support;

/// One test schema: a name, what to ask the model, the schema.
struct Case {
    name: String,
    ask: String,
    schema: Value,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../data/json-schemas.json");
    let all: Vec<Value> = serde_json::from_str(text).unwrap();
    all.into_iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            ask: c["ask"].as_str().unwrap().to_owned(),
            schema: c["schema"].clone(),
        })
        .collect()
}

/// `text` must parse and validate against `schema`.
fn assert_valid(model: TestModel, case: &str, schema: &Value, text: &str) {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{model:?} {case}: {text:?} does not parse: {e}"));
    if let Err(e) = jsonschema::validate(schema, &value) {
        panic!("{model:?} {case}: {text} does not validate: {e}");
    }
}

/// A user turn in the model's chat format.
fn chat_prompt(model: TestModel, ask: &str) -> String {
    match model {
        TestModel::SmolLm2 => format!(
            "<|im_start|>user\n{ask} Answer with JSON only.<|im_end|>\n<|im_start|>assistant\n"
        ),
        TestModel::Gemma3 => format!(
            "<start_of_turn>user\n{ask} Answer with JSON only.<end_of_turn>\n<start_of_turn>model\n"
        ),
    }
}

/// Samples with seeded random logits through `constraint` until the document completes
/// or an end-of-generation token is drawn; `None` if `limit` tokens did not end it.
fn random_walk(
    tokenizer: &Tokenizer,
    mut constraint: Constraint,
    seed: u64,
    limit: usize,
) -> Option<String> {
    let mut sampler = Sampler::new(SamplerOptions {
        seed,
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repeat_penalty: 1.0,
        ..SamplerOptions::default()
    })
    .unwrap();
    let mut rng = SamplerRng::new(seed.wrapping_mul(31));
    let mut logits = vec![0.0f32; tokenizer.vocab().len()];
    let mut out = Vec::new();
    for _ in 0..limit {
        for l in &mut logits {
            *l = (rng.next_f64() * 8.0) as f32;
        }
        let token = sampler.next_token(constraint.mask(&logits).unwrap(), &[]);
        if tokenizer.vocab().is_end_of_generation(token) {
            return Some(tokenizer.decode(&out, false));
        }
        constraint.commit(token).unwrap();
        out.push(token);
        if constraint.is_complete() {
            return Some(tokenizer.decode(&out, false));
        }
    }
    None
}

#[test]
fn random_walks_through_the_real_vocabularies_give_valid_documents() {
    // Random logits favour no token, so strings run to their maxLength: the schemas
    // here bound every string, so each walk ends.
    let schemas = [
        r#"{"type":"object","properties":{"n":{"type":"integer","minimum":-5,"maximum":500},
            "tag":{"enum":["alpha","beta"]},"s":{"type":"string","maxLength":6},
            "list":{"type":"array","items":{"type":"boolean"},"maxItems":3}},
            "required":["n","tag","s","list"],"additionalProperties":false}"#,
        r#"{"type":"array","items":{"type":"object","properties":{"x":{"type":"number",
            "minimum":0,"maximum":1}},"required":["x"],"additionalProperties":false},
            "minItems":1,"maxItems":2}"#,
    ];
    for model in [TestModel::SmolLm2, TestModel::Gemma3] {
        let tokenizer = Arc::new(support::tokenizer(model));
        let grammars = Grammars::new(Arc::clone(&tokenizer));
        for schema in schemas {
            let parsed: Value = serde_json::from_str(schema).unwrap();
            for seed in 0..5 {
                let constraint = grammars.compile(schema).unwrap();
                let Some(text) = random_walk(&tokenizer, constraint, seed, 2000) else {
                    panic!("{model:?} seed {seed}: no end in 2000 tokens");
                };
                assert_valid(model, schema, &parsed, &text);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_schemas_give_valid_json_on_both_models() {
    let cases = cases();
    assert_eq!(cases.len(), 20);
    for model in [TestModel::SmolLm2, TestModel::Gemma3] {
        let mut served = Served::with_model(model, Default::default()).await;
        for case in &cases {
            let request = pb::GenerateRequest {
                json_schema: Some(case.schema.to_string()),
                ..served::greedy(&chat_prompt(model, &case.ask), 512)
            };
            let out = served::generate(&mut served.client, request)
                .await
                .unwrap_or_else(|e| panic!("{model:?} {}: {e}", case.name));
            assert_eq!(
                out.done.reason(),
                pb::DoneReason::Stop,
                "{model:?} {}: the grammar must end the output: {:?}",
                case.name,
                out.text
            );
            assert_valid(model, &case.name, &case.schema, &out.text);
        }
        let status = served
            .client
            .generate(pb::GenerateRequest {
                json_schema: Some(r#"{"type":"integer","minimum":9,"maximum":1}"#.into()),
                ..served::greedy("hello", 8)
            })
            .await
            .expect_err("a schema no value satisfies is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("schema"), "{}", status.message());
    }
}
