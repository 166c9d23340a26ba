//! Host bindings of the `whenever:step` world (`wit/step.wit`).

wasmtime::component::bindgen!({
    world: "step",
    path: "../wit",
    // Logging and the task API only record what the step asks: plain calls, without the
    // machinery of an async host call (a future boxed and polled per call). Connector calls
    // wait on the network, and are async.
    imports: {
        "whenever:step/log": trappable,
        "whenever:step/task": trappable,
        default: async | trappable,
    },
    exports: { default: async },
});
