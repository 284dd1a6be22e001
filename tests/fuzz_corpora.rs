//! Runs every fuzz target (`fuzz/targets.rs`) over its seed corpus
//! (`fuzz/corpus/<target>/`) and every regression input the fuzzers found
//! (`fuzz/regressions/<target>/`), on stable: the targets stay built and
//! their invariants checked on machines without a nightly toolchain.
//! FUZZING.md says how to run the coverage-guided fuzzers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_target_runs_its_corpus_and_regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in targets::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                target(&data);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no seed inputs for the {name} target");
        // The empty input and a little noise, always.
        target(b"");
        target(&[0xff, 0x00, b'\n', b'%', b'@']);
    }
}
