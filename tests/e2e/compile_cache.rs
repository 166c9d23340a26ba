//! Compiled components are cached on disk by content hash: a restarted host does not recompile.

use std::sync::Arc;

use whenever::runtime::{Runtime, RuntimeConfig, StepManifest};
use whenever_step_artifacts::testing::WRITE_A;

#[tokio::test]
async fn a_restart_loads_compiled_steps_from_the_cache() {
    let dir = std::env::temp_dir().join(format!("whenever-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = std::fs::read(WRITE_A.component).expect("component");
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    };

    let first = Arc::new(Runtime::new(config.clone()).expect("runtime"));
    let step = first
        .load("write-a", &bytes, StepManifest::default())
        .await
        .expect("loads");
    assert_eq!(first.compile_stats().compiled, 1);
    assert_eq!(first.compile_stats().from_cache, 0);
    drop(first);

    let second = Runtime::new(config).expect("runtime");
    let again = second
        .load("write-a", &bytes, StepManifest::default())
        .await
        .expect("loads");
    assert_eq!(second.compile_stats().compiled, 0, "nothing recompiled");
    assert_eq!(second.compile_stats().from_cache, 1);
    assert_eq!(step.version, again.version);

    // Bytes that differ are a different version and are compiled.
    let mut other = bytes.clone();
    other.extend_from_slice(&[0, 5, 4, b'n', b'o', b'p', b'e']); // a trailing custom section "nope"
    let changed = second
        .load("write-a", &other, StepManifest::default())
        .await
        .expect("still a component");
    assert_ne!(changed.version, again.version);
    assert_eq!(second.compile_stats().compiled, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
