//! Host bindings of the `whenever:step` world (`wit/step.wit`).

wasmtime::component::bindgen!({
    world: "step",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});
