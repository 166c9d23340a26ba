//! Test step: allocates without bound (stopped by the memory limit).
use whenever_step_sdk::prelude::*;

struct MemoryBomb;

impl Step for MemoryBomb {
    fn condition() -> Value {
        condition!({ eatMemory: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            if std::hint::black_box(hoard.len()) == usize::MAX {
                break;
            }
        }
        set(data, "unreachable", hoard.len());
        Ok(())
    }
}

export_step!(MemoryBomb);
