//! Errors at the JS boundary: a core refusal becomes a JS `Error` carrying the core's
//! `code` and `codeName` (both read from the core's one table of codes,
//! `pasid_core::ErrorCode`); an argument the layer cannot read becomes a `TypeError`.

use wasm_bindgen::prelude::*;

use crate::args::ArgError;
use pasid_core::lease::{LeaseError, LoadError};

#[wasm_bindgen]
extern "C" {
    /// The JS `Error` class, to throw core errors as real `Error`s with extra fields.
    #[wasm_bindgen(js_name = Error)]
    type JsErrorObject;
    #[wasm_bindgen(constructor, js_class = "Error")]
    fn new(message: &str) -> JsErrorObject;
    #[wasm_bindgen(method, setter = name)]
    fn set_name(this: &JsErrorObject, name: &str);
    #[wasm_bindgen(method, setter = code)]
    fn set_code(this: &JsErrorObject, code: u32);
    #[wasm_bindgen(method, setter = codeName)]
    fn set_code_name(this: &JsErrorObject, name: &str);

    /// The JS `TypeError` class, for arguments the layer cannot read.
    #[wasm_bindgen(js_name = TypeError)]
    type JsTypeError;
    #[wasm_bindgen(constructor, js_class = "TypeError")]
    fn new(message: &str) -> JsTypeError;
}

/// Why a call failed, before it becomes a thrown JS value at the boundary.
#[derive(Debug)]
pub enum Fail {
    /// The core refused: thrown as `Error` with `code`.
    Core(pasid_core::Error),
    /// An argument could not be read: thrown as `TypeError`.
    Arg(ArgError),
    /// A value could not be converted (serde-wasm-bindgen); thrown as is.
    Js(JsValue),
    /// The (simulated) broker's lease state machine refused: thrown as `Error` with
    /// `name` `"LeaseError"` and `codeName` the refusal's name (it has no number: the
    /// C API never meets it).
    Lease(LeaseError),
    /// The broker's store did not load (a bug of the simulation if ever seen).
    Load(LoadError),
}

impl From<LeaseError> for Fail {
    fn from(e: LeaseError) -> Self {
        Fail::Lease(e)
    }
}

impl From<LoadError> for Fail {
    fn from(e: LoadError) -> Self {
        Fail::Load(e)
    }
}

/// The variant's name of a `Debug` text (`Exhausted { asked: 3, .. }` -> `Exhausted`).
fn variant_name(debug: &str) -> &str {
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or(debug)
}

impl From<pasid_core::Error> for Fail {
    fn from(e: pasid_core::Error) -> Self {
        Fail::Core(e)
    }
}

impl From<ArgError> for Fail {
    fn from(e: ArgError) -> Self {
        Fail::Arg(e)
    }
}

impl From<serde_wasm_bindgen::Error> for Fail {
    fn from(e: serde_wasm_bindgen::Error) -> Self {
        Fail::Js(e.into())
    }
}

impl From<Fail> for JsValue {
    fn from(fail: Fail) -> JsValue {
        match fail {
            Fail::Core(e) => {
                let err = JsErrorObject::new(&e.to_string());
                err.set_name("PasidError");
                err.set_code(e.code().number());
                err.set_code_name(e.code().name());
                err.into()
            }
            Fail::Lease(e) => {
                let err = JsErrorObject::new(&e.to_string());
                err.set_name("LeaseError");
                err.set_code_name(variant_name(&format!("{e:?}")));
                err.into()
            }
            Fail::Load(e) => {
                let err = JsErrorObject::new(&format!("broker store: {e}"));
                err.set_name("LeaseError");
                err.set_code_name(variant_name(&format!("{e:?}")));
                err.into()
            }
            Fail::Arg(ArgError(message)) => JsTypeError::new(&message).into(),
            Fail::Js(value) => value,
        }
    }
}

/// What every exported function returns.
pub type Out<T> = Result<T, Fail>;

/// A value as a plain JS object (`json_compatible`: objects not `Map`s, `null` for
/// `None`, numbers not `BigInt`s, bytes as arrays), so `JSON.stringify` works on it.
pub(crate) fn to_js<T: serde::Serialize>(value: &T) -> Out<JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    Ok(value.serialize(&serializer)?)
}
