//! The test models that scripts/fetch-models provides are present and whole.

use e2e::TestModel;

#[test]
fn both_test_models_are_present_with_their_published_sizes() {
    let smollm = std::fs::metadata(TestModel::SmolLm2.path()).unwrap();
    assert_eq!(smollm.len(), 98_362_432);
    let gemma = std::fs::metadata(TestModel::Gemma3.path()).unwrap();
    assert_eq!(gemma.len(), 253_113_024);
}
