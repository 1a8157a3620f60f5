//! `ollama-runner serve` spoken to over gRPC on its Unix socket, as the supervisor does.

use e2e::TestModel;
use ollama_proto::RUNNER_PROTOCOL_VERSION;
use ollama_proto::runner as pb;
use tonic::Code;

use crate::served::{Served, generate, greedy, load_request};
use crate::support::{REFERENCE_FLAGS, run_generate};

/// llama.cpp's reference path: f32 K/V, flash attention off.
fn reference() -> pb::LoadRequest {
    pb::LoadRequest {
        cache_type_k: "f32".into(),
        cache_type_v: "f32".into(),
        flash_attention: Some(false),
        numerics: "exact".into(),
        ..Default::default()
    }
}

const PROMPTS: [&str; 4] = [
    "The capital of France is",
    "Here is a list of fruits: apple,",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
];

/// A text of well over 1,000 SmolLM2 tokens.
fn long_text() -> String {
    (1..=120)
        .map(|i| format!("Clause {i}: the licensee shall keep every notice intact. "))
        .collect()
}

fn strip_newline(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

/// Attention's sums do not depend on the other sequences of a batch or on where a
/// sequence's cells lie, on the reference path and with flash attention alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_output_equals_generate_alone_and_four_at_once() {
    for (load, flags) in [
        (reference(), &REFERENCE_FLAGS[..]),
        (pb::LoadRequest::default(), &[][..]),
    ] {
        same_output_alone_and_together(load, flags).await;
    }
}

async fn same_output_alone_and_together(load: pb::LoadRequest, flags: &[&str]) {
    let n = 24;
    let expected: Vec<String> = PROMPTS
        .iter()
        .map(|p| strip_newline(&run_generate(TestModel::SmolLm2, p, n, flags).0).to_owned())
        .collect();
    let options = pb::LoadRequest {
        num_parallel: Some(4),
        ..load
    };
    let served = Served::with_model(TestModel::SmolLm2, options).await;

    for (prompt, want) in PROMPTS.iter().zip(&expected) {
        let got = generate(&mut served.client().await, greedy(prompt, n as i32))
            .await
            .unwrap();
        assert_eq!(&got.text, want, "alone: {prompt} {flags:?}");
    }
    let mut tasks = Vec::new();
    for prompt in PROMPTS {
        let mut client = served.client().await;
        tasks.push(tokio::spawn(async move {
            generate(&mut client, greedy(prompt, n as i32)).await
        }));
    }
    for ((task, prompt), want) in tasks.into_iter().zip(PROMPTS).zip(&expected) {
        let got = task.await.unwrap().unwrap();
        assert_eq!(&got.text, want, "four at once: {prompt} {flags:?}");
        assert_eq!(got.done.timings.unwrap().generated_tokens, n as u32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sharing_a_prefix_evaluates_only_the_rest() {
    let mut served = Served::with_model(TestModel::SmolLm2, Default::default()).await;
    let prefix = long_text();
    let first = generate(
        &mut served.client,
        greedy(&format!("{prefix}Question one?"), 4),
    )
    .await
    .unwrap();
    let t1 = first.done.timings.unwrap();
    assert!(
        t1.prompt_tokens > 1000,
        "{} prompt tokens",
        t1.prompt_tokens
    );
    assert_eq!(t1.cached_tokens, 0);

    let second = generate(
        &mut served.client,
        greedy(&format!("{prefix}Another question?"), 4),
    )
    .await
    .unwrap();
    let t2 = second.done.timings.unwrap();
    assert!(
        t2.cached_tokens >= 1000,
        "{} cached tokens",
        t2.cached_tokens
    );
    assert!(
        t2.prompt_tokens - t2.cached_tokens < 10,
        "{} of {} prompt tokens evaluated",
        t2.prompt_tokens - t2.cached_tokens,
        t2.prompt_tokens
    );
    let status = served.status().await;
    assert_eq!(status.slots_busy, 0);
    assert!(status.tokens_cached >= u64::from(t2.prompt_tokens));
}

/// Starts a generation, waits for its first piece and drops the stream.
async fn start_and_drop(served: &Served, prompt: &str) {
    let mut client = served.client().await;
    let mut stream = client
        .generate(greedy(prompt, 200))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(pb::generate_response::Event::Piece(_))
    ));
}

async fn wait_idle(served: &mut Served) -> pb::StatusResponse {
    for _ in 0..100 {
        let status = served.status().await;
        if status.slots_busy == 0 {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("a dropped stream kept its slot for 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_streams_free_their_slots_and_leave_nothing_behind() {
    let options = pb::LoadRequest {
        num_parallel: Some(2),
        ..Default::default()
    };
    let mut served = Served::with_model(TestModel::SmolLm2, options).await;
    for i in 0..10 {
        start_and_drop(&served, &format!("Warm-up number {i} says")).await;
        wait_idle(&mut served).await;
    }
    let before = served.status().await.memory.unwrap().rss_bytes;
    for i in 0..100 {
        start_and_drop(&served, &format!("Request number {i} of many says")).await;
        let status = wait_idle(&mut served).await;
        assert_eq!(status.tokens_cached, 0, "cycle {i} left cells behind");
    }
    let after = served.status().await.memory.unwrap().rss_bytes;
    let growth = after.saturating_sub(before);
    assert!(
        growth < 4 << 20,
        "RSS grew by {growth} bytes over 100 cycles"
    );
    // The runner still serves.
    let ok = generate(&mut served.client, greedy(PROMPTS[0], 4))
        .await
        .unwrap();
    assert_eq!(ok.done.timings.unwrap().generated_tokens, 4);
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, words: &[&str]) {
    let status = result.expect_err("a bad request must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    for w in words {
        assert!(
            status.message().contains(w),
            "'{}' does not mention '{w}'",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_clear_statuses_and_the_runner_keeps_serving() {
    let mut served = Served::start().await;
    let c = &mut served.client;
    assert_status(
        c.generate(greedy("hello", 4)).await.map(drop),
        Code::FailedPrecondition,
        &["Load"],
    );
    assert_status(
        c.health(pb::HealthRequest {
            protocol_version: 999,
        })
        .await,
        Code::FailedPrecondition,
        &["999"],
    );
    let bad_type = pb::LoadRequest {
        cache_type_k: "q9_9".into(),
        ..Default::default()
    };
    assert_status(
        c.load(load_request(TestModel::SmolLm2, bad_type)).await,
        Code::InvalidArgument,
        &["q9_9", "q8_0"],
    );
    let bad_numerics = pb::LoadRequest {
        numerics: "sloppy".into(),
        ..Default::default()
    };
    assert_status(
        c.load(load_request(TestModel::SmolLm2, bad_numerics)).await,
        Code::InvalidArgument,
        &["sloppy", "exact or fast"],
    );
    let zero_ctx = pb::LoadRequest {
        num_ctx: Some(0),
        ..Default::default()
    };
    assert_status(
        c.load(load_request(TestModel::SmolLm2, zero_ctx)).await,
        Code::InvalidArgument,
        &["num_ctx"],
    );
    let missing = pb::LoadRequest {
        model_path: "/nonexistent/model.gguf".into(),
        ..load_request(TestModel::SmolLm2, Default::default())
    };
    assert_status(
        c.load(missing).await,
        Code::NotFound,
        &["/nonexistent/model.gguf"],
    );

    let small = pb::LoadRequest {
        num_ctx: Some(64),
        ..Default::default()
    };
    c.load(load_request(TestModel::SmolLm2, small.clone()))
        .await
        .unwrap();
    assert_status(
        c.load(load_request(TestModel::SmolLm2, small)).await,
        Code::FailedPrecondition,
        &["already"],
    );
    let long = pb::GenerateRequest {
        shift: Some(false),
        ..greedy(&long_text(), 4)
    };
    assert_status(
        c.generate(long).await.map(drop),
        Code::ResourceExhausted,
        &["64"],
    );
    let hot = pb::GenerateRequest {
        sampling: Some(pb::SamplingOptions {
            temperature: Some(f32::NAN),
            ..Default::default()
        }),
        ..greedy("hello", 4)
    };
    assert_status(
        c.generate(hot).await.map(drop),
        Code::InvalidArgument,
        &["temperature"],
    );
    let many = pb::GenerateRequest {
        top_logprobs: 50,
        ..greedy("hello", 4)
    };
    assert_status(
        c.generate(many).await.map(drop),
        Code::InvalidArgument,
        &["top_logprobs"],
    );
    assert_status(
        c.generate(greedy("", 4)).await.map(drop),
        Code::InvalidArgument,
        &["empty"],
    );
    assert_status(
        c.detokenize(pb::DetokenizeRequest {
            tokens: vec![1, 4_000_000],
            special: false,
        })
        .await,
        Code::InvalidArgument,
        &["4000000"],
    );
    assert_status(
        c.embed(pb::EmbedRequest::default()).await,
        Code::InvalidArgument,
        &["inputs"],
    );

    let health = c
        .health(pb::HealthRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.state(), pb::RunnerState::Ready);
    let ok = generate(c, greedy("hello", 4)).await.unwrap();
    assert_eq!(ok.done.timings.unwrap().generated_tokens, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_limits_seeds_and_the_context_end_a_generation_as_asked() {
    let options = pb::LoadRequest {
        num_ctx: Some(96),
        ..reference()
    };
    let served = Served::with_model(TestModel::SmolLm2, options).await;
    let mut c = served.client().await;
    let prompt = PROMPTS[3];
    let full = generate(&mut c, greedy(prompt, 24)).await.unwrap();
    assert_eq!(full.done.reason(), pb::DoneReason::Length);
    assert_eq!(full.tokens.len(), 24);

    // A stop string that starts inside one token and ends in another.
    let chars: Vec<char> = full.text.chars().collect();
    let (from, to) = (chars.len() / 2, chars.len() / 2 + 6);
    let stop: String = chars[from..to].iter().collect();
    let before = full.text.find(&stop).unwrap();
    let stopped = generate(
        &mut c,
        pb::GenerateRequest {
            stop: vec![stop.clone()],
            ..greedy(prompt, 24)
        },
    )
    .await
    .unwrap();
    assert_eq!(stopped.done.reason(), pb::DoneReason::Stop);
    assert_eq!(stopped.text, full.text[..before], "stop {stop:?}");

    let sampled = |seed| pb::GenerateRequest {
        sampling: Some(pb::SamplingOptions {
            temperature: Some(1.0),
            ..Default::default()
        }),
        seed: Some(seed),
        logprobs: true,
        top_logprobs: 3,
        ..greedy(prompt, 16)
    };
    let a = generate(&mut c, sampled(7)).await.unwrap();
    let b = generate(&mut c, sampled(7)).await.unwrap();
    assert_eq!(a.tokens, b.tokens, "the same seed gives the same tokens");

    let p = generate(&mut c, greedy(prompt, 1)).await.unwrap();
    let prompt_tokens = p.done.timings.unwrap().prompt_tokens;
    let no_shift = generate(
        &mut c,
        pb::GenerateRequest {
            shift: Some(false),
            ..greedy(prompt, 500)
        },
    )
    .await
    .unwrap();
    assert_eq!(no_shift.done.reason(), pb::DoneReason::Length);
    assert_eq!(
        no_shift.done.timings.unwrap().generated_tokens,
        96 - prompt_tokens + 1
    );
    let shifted = generate(&mut c, greedy(prompt, 200)).await.unwrap();
    assert_eq!(shifted.done.reason(), pb::DoneReason::Length);
    assert_eq!(shifted.tokens.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_tokenize_embed_and_reflection() {
    let served = Served::with_model(TestModel::SmolLm2, Default::default()).await;
    let mut c = served.client().await;

    let mut stream = c
        .generate(pb::GenerateRequest {
            logprobs: true,
            top_logprobs: 3,
            ..greedy(PROMPTS[0], 2)
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::generate_response::Event::Piece(piece)) =
        stream.message().await.unwrap().unwrap().event
    else {
        panic!("no piece first");
    };
    let token = &piece.tokens[0];
    assert_eq!(token.top_logprobs.len(), 3);
    assert_eq!(
        token.top_logprobs[0].id, token.id,
        "greedy takes the most likely"
    );
    assert!(token.logprob.unwrap() <= 0.0);
    drop(stream);

    let text = "Hello, world! Ünïcödé";
    let tokens = c
        .tokenize(pb::TokenizeRequest {
            text: text.into(),
            add_special: false,
            parse_special: false,
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let back = c
        .detokenize(pb::DetokenizeRequest {
            tokens,
            special: false,
        })
        .await
        .unwrap()
        .into_inner()
        .text;
    assert_eq!(back, text);

    let embedded = c
        .embed(pb::EmbedRequest {
            inputs: vec!["a cat".into(), "a dog".into(), "a cat".into()],
            normalize: None,
            truncate: false,
        })
        .await
        .unwrap()
        .into_inner();
    let v: Vec<&[f32]> = embedded.embeddings.iter().map(|e| &e.values[..]).collect();
    assert_eq!(v.len(), 3);
    assert_eq!(v[0].len(), 576, "SmolLM2's hidden size");
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    assert_eq!(v[0], v[2]);
    assert_ne!(v[0], v[1]);

    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            crate::served::connect(served.socket()).await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let listed = format!("{:?}", answer.message_response);
    assert!(listed.contains("ollama.runner.v1.Runner"), "{listed}");
}

/// Starts a generation on its own connection and returns its stream after the first
/// piece, so it is surely running.
async fn running_generation(
    served: &Served,
    request: pb::GenerateRequest,
) -> tonic::Streaming<pb::GenerateResponse> {
    let mut client = served.client().await;
    let mut stream = client.generate(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(pb::generate_response::Event::Piece(_))
    ));
    stream
}

/// Reads `stream` to its end: the Done, or the status it failed with.
async fn rest(
    mut stream: tonic::Streaming<pb::GenerateResponse>,
) -> Result<pb::Done, tonic::Status> {
    while let Some(message) = stream.message().await? {
        if let Some(pb::generate_response::Event::Done(done)) = message.event {
            return Ok(done);
        }
    }
    panic!("the stream ended without Done");
}

async fn shutdown(served: &Served, drain_ms: u64) -> pb::ShutdownResponse {
    served
        .client()
        .await
        .shutdown(pb::ShutdownRequest { drain_ms })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_generation_finish_and_refuses_new_work() {
    let served = Served::with_model(TestModel::SmolLm2, Default::default()).await;
    let stream = running_generation(&served, greedy(PROMPTS[3], 32)).await;
    let reader = tokio::spawn(rest(stream));
    let answer = shutdown(&served, 60_000).await;
    assert_eq!(
        (answer.finished, answer.cancelled),
        (1, 0),
        "the generation ran to its end"
    );
    let done = reader
        .await
        .unwrap()
        .expect("the drained stream ends normally");
    assert_eq!(done.reason(), pb::DoneReason::Length);
    assert_eq!(done.timings.unwrap().generated_tokens, 32);

    let mut c = served.client().await;
    assert_status(
        c.generate(greedy("hello", 4)).await.map(drop),
        Code::Unavailable,
        &["shutting down"],
    );
    assert_status(
        c.embed(pb::EmbedRequest {
            inputs: vec!["a cat".into()],
            normalize: None,
            truncate: false,
        })
        .await,
        Code::Unavailable,
        &["shutting down"],
    );
    let health = c
        .health(pb::HealthRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.state(), pb::RunnerState::Stopping);
    // Idle now: a second Shutdown answers at once.
    let again = shutdown(&served, 60_000).await;
    assert_eq!((again.finished, again.cancelled), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_a_generation_still_running_at_its_deadline() {
    let served = Served::with_model(TestModel::SmolLm2, Default::default()).await;
    let endless = greedy(PROMPTS[1], 1_000_000);
    let stream = running_generation(&served, endless).await;
    let reader = tokio::spawn(rest(stream));
    let answer = shutdown(&served, 200).await;
    assert_eq!((answer.finished, answer.cancelled), (0, 1));
    let status = reader.await.unwrap().expect_err("the stream is cut off");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(status.message().contains("drain"), "{status:?}");
    let mut c = served.client().await;
    let idle = c.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(idle.state(), pb::RunnerState::Stopping);
}

/// Each synthetic architecture served as the supervisor serves a model: two requests at
/// once in one batch giving what each gives alone, a second request sharing a prompt
/// evaluating only its new tokens, and a generation running past `num_ctx` through the
/// context shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_architecture_batches_reuses_prefixes_and_shifts_its_context() {
    for arch in ["llama", "qwen2", "qwen3", "qwen3moe", "gemma2", "phi3"] {
        let mut served = Served::start().await;
        let load = pb::LoadRequest {
            protocol_version: RUNNER_PROTOCOL_VERSION,
            model_path: e2e::synthetic_model(arch, "Q4_0").display().to_string(),
            num_threads: 2,
            num_ctx: Some(96),
            num_parallel: Some(2),
            ..Default::default()
        };
        served.client.load(load).await.expect("load");
        let prompt = "Once upon a time, in a small village by the sea, there lived";

        let alone = generate(&mut served.client, greedy(prompt, 12))
            .await
            .unwrap();
        let other = generate(&mut served.client, greedy(PROMPTS[2], 12))
            .await
            .unwrap();
        let t = alone.done.timings.unwrap();
        assert!(
            t.prompt_tokens >= 10,
            "{arch}: {} prompt tokens",
            t.prompt_tokens
        );

        let (mut c1, mut c2) = (served.client().await, served.client().await);
        let (a, b) = tokio::join!(
            generate(&mut c1, greedy(prompt, 12)),
            generate(&mut c2, greedy(PROMPTS[2], 12))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            a.tokens, alone.tokens,
            "{arch}: batched beside another request"
        );
        assert_eq!(b.tokens, other.tokens, "{arch}: the other request, batched");
        let again = generate(&mut served.client, greedy(prompt, 12))
            .await
            .unwrap();
        assert_eq!(
            again.tokens, alone.tokens,
            "{arch}: again, from the cached prefix"
        );
        let cached = again.done.timings.unwrap().cached_tokens;
        assert!(
            cached + 1 >= t.prompt_tokens,
            "{arch}: {cached} of {} prompt tokens cached",
            t.prompt_tokens
        );

        let shifted = generate(&mut served.client, greedy(prompt, 150))
            .await
            .unwrap();
        assert_eq!(shifted.done.reason(), pb::DoneReason::Length, "{arch}");
        assert_eq!(
            shifted.tokens.len(),
            150,
            "{arch}: past num_ctx 96 by the shift"
        );
    }
}
