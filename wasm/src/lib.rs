//! wasm bindings over pasid-core. TODO(issue 6).
