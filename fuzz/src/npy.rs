//! Target `npy`: the `.npy` reader (`npy::from_bytes`) for both element types.
//!
//! Properties: what reads writes back (`npy::encode`) to a file that reads as the same array,
//! bit for bit; the values read never outnumber what the bytes hold.

use modeconn_runtime::npy::{self, NpyElement};
use ndarray::ArrayD;

/// Runs one input.
pub fn run(data: &[u8]) {
    round_trip::<f32>(data, |v| u64::from(v.to_bits()));
    round_trip::<i64>(data, |v| v as u64);
}

fn round_trip<T: NpyElement>(data: &[u8], bits: impl Fn(T) -> u64) {
    let Ok(array): Result<ArrayD<T>, _> = npy::from_bytes("fuzz.npy", data) else {
        return;
    };
    assert!(
        array.len() * size_of::<T>() <= data.len(),
        "more values than bytes"
    );
    let bytes = npy::encode(&array.view());
    let back: ArrayD<T> = npy::from_bytes("fuzz.npy", &bytes).expect("what was read reads again");
    assert_eq!(array.shape(), back.shape());
    assert!(
        array
            .iter()
            .zip(back.iter())
            .all(|(&a, &b)| bits(a) == bits(b)),
        "the values changed on the way back"
    );
}
