//! Test step: writes `[[…[]…]]`, arrays nested `nestLevels` deep, at `nested` (the task's data
//! is then one level deeper).
use whenever_step_sdk::prelude::*;

struct Nests;

impl Step for Nests {
    fn condition() -> Value {
        condition!({ nestLevels: "$number", nested: null })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let levels = get(data, "nestLevels").as_u64().unwrap_or(0);
        let nested = (1..levels).fold(Value::Array(Vec::new()), |inner, _| Value::Array(vec![inner]));
        set(data, "nested", nested);
        Ok(())
    }
}

export_step!(Nests);
