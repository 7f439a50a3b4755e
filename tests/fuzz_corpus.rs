//! The fuzz corpus (`fuzz/corpus/validate`, grown by `bash bench/fuzz.sh` with cargo-fuzz)
//! replayed through what the fuzz target runs: every input that ever found a new path through
//! the loader, validator and planner still gets an answer, not a panic. The full fuzz run is a
//! benchmark (millions of executions); this is its bounded form, run with the tests.

use std::path::PathBuf;

#[test]
fn every_corpus_input_gets_an_answer() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/validate");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus/validate")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 8,
        "the corpus holds {} inputs",
        inputs.len()
    );
    for input in inputs {
        let data = std::fs::read(&input).expect("read corpus input");
        // On a thread with the main thread's stack, as `drillbook validate` runs it (a test
        // thread has a quarter of that).
        let outcome = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || drillbook::fuzzing::exercise(&data))
            .expect("spawn")
            .join();
        assert!(outcome.is_ok(), "{} panics", input.display());
    }
}
