//! NumPy's `.npy` format, read and written with the `npyz` crate: what
//! `strata predict --weights` reads as a batch of images (NCHW).
//!
//! Reading takes what `np.save` writes for real numbers: float32 and float64, signed and
//! unsigned integers of 1 to 8 bytes, and booleans, little- or big-endian, in C or Fortran
//! order; values come back as `f32` in C (row-major) order. Writing gives float32, C order.
//!
//! ```
//! use strata_data::{npy_f32_bytes, parse_npy_f32};
//! let bytes = npy_f32_bytes(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])?;
//! let (shape, values) = parse_npy_f32(&bytes, "x.npy")?;
//! assert_eq!((shape, values[5]), (vec![2, 3], 5.0));
//! # Ok::<(), strata_data::Error>(())
//! ```

use std::path::Path;

use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses a `.npy` byte buffer: its shape and its values as `f32` in C order.
///
/// # Errors
/// [`Error::Invalid`] naming `source` for a bad magic string or header, a dtype that is not a
/// real number (strings, records, complex), a shape whose size overflows, or data whose length
/// disagrees with the shape.
pub fn parse_npy_f32(bytes: &[u8], source: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |m: String| Error::Invalid(format!("{source}: {m}"));
    if !bytes.starts_with(MAGIC) {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let mut data = bytes;
    let header = NpyHeader::from_reader(&mut data).map_err(|e| {
        // The header parser's message spans lines (a caret diagram): keep the first.
        let text = e.to_string();
        bad(format!(
            "unreadable .npy header: {}",
            text.lines().next().unwrap_or("").trim()
        ))
    })?;
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad(format!("shape {:?} is too large", header.shape())))?;
    let DType::Plain(ty) = header.dtype() else {
        return Err(bad(format!(
            "dtype {}: expected a plain number type (float, int, uint or bool)",
            header.dtype().descr()
        )));
    };
    let item = ty.num_bytes().unwrap_or(usize::MAX);
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let need = n.and_then(|n| n.checked_mul(item));
    match need {
        None => return Err(bad(format!("shape {shape:?} is too large"))),
        Some(need) if need != data.len() => {
            return Err(bad(format!(
                "shape {shape:?} of {ty} needs {need} bytes of data, the file has {}",
                data.len()
            )));
        }
        Some(_) => {}
    }
    let file = NpyFile::with_header(header.clone(), data);
    let read = |e: std::io::Error| bad(format!("cannot read the data: {e}"));
    macro_rules! as_f32 {
        ($t:ty) => {
            file.into_vec::<$t>()
                .map_err(read)?
                .into_iter()
                .map(|v| v as f32)
                .collect::<Vec<f32>>()
        };
    }
    let values = match (ty.type_char(), ty.size_field()) {
        (TypeChar::Float, 4) => file.into_vec::<f32>().map_err(read)?,
        (TypeChar::Float, 8) => as_f32!(f64),
        (TypeChar::Int, 1) => as_f32!(i8),
        (TypeChar::Int, 2) => as_f32!(i16),
        (TypeChar::Int, 4) => as_f32!(i32),
        (TypeChar::Int, 8) => as_f32!(i64),
        (TypeChar::Uint, 1) => as_f32!(u8),
        (TypeChar::Uint, 2) => as_f32!(u16),
        (TypeChar::Uint, 4) => as_f32!(u32),
        (TypeChar::Uint, 8) => as_f32!(u64),
        (TypeChar::Bool, 1) => file
            .into_vec::<bool>()
            .map_err(read)?
            .into_iter()
            .map(|b| if b { 1.0 } else { 0.0 })
            .collect(),
        _ => {
            return Err(bad(format!(
                "dtype {ty}: expected float32/64, an integer or bool; save with x.astype('float32')"
            )));
        }
    };
    let values = match header.order() {
        Order::C => values,
        Order::Fortran => fortran_to_c(&values, &shape),
    };
    Ok((shape, values))
}

/// Reorders a Fortran-order (column-major) array of `shape` into C order.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        // The Fortran offset of the C-order multi-index: the first axis varies fastest.
        let mut offset = 0;
        let mut stride = 1;
        for (i, d) in index.iter().zip(shape) {
            offset += i * stride;
            stride *= d;
        }
        out.push(values[offset]);
        // Next C-order index: the last axis varies fastest.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Reads a `.npy` file as `f32` ([`parse_npy_f32`]).
///
/// # Errors
/// I/O errors, and those of [`parse_npy_f32`].
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    parse_npy_f32(&bytes, &path.display().to_string())
}

/// Writes `values` of `shape` as a float32, C-order `.npy` byte buffer.
///
/// # Errors
/// [`Error::Mismatch`] when `values` does not hold `shape`'s product of values.
pub fn npy_f32_bytes(shape: &[usize], values: &[f32]) -> Result<Vec<u8>> {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(values.len()) {
        return Err(Error::Mismatch(format!(
            "shape {shape:?} does not hold {} values",
            values.len()
        )));
    }
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    let write = |e: std::io::Error| Error::Invalid(format!("cannot write .npy: {e}"));
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut out)
        .begin_nd()
        .map_err(write)?;
    w.extend(values.iter().copied()).map_err(write)?;
    w.finish().map_err(write)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `.npy` file as `np.save` lays it out (version 1.0, header padded with spaces to a
    /// multiple of 64 bytes and ended with a newline) with the given header fields and data.
    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_and_reads_numpys_header() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = npy_f32_bytes(&[2, 3, 4], &values).unwrap();
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        assert_eq!(
            parse_npy_f32(&bytes, "x").unwrap(),
            (vec![2, 3, 4], values.clone())
        );
        // numpy 2's own header for np.zeros((1, 2), 'float32'), byte for byte.
        let np = npy("<f4", false, "(1, 2)", &[0; 8]);
        assert_eq!(u16::from_le_bytes([np[8], np[9]]), 118);
        assert_eq!(
            parse_npy_f32(&np, "np").unwrap(),
            (vec![1, 2], vec![0.0, 0.0])
        );
        // A 1-D shape `(3,)`.
        let bytes = npy_f32_bytes(&[3], &values[..3]).unwrap();
        assert_eq!(parse_npy_f32(&bytes, "x").unwrap().0, vec![3]);
        assert!(npy_f32_bytes(&[2, 2], &values[..3]).is_err());
    }

    #[test]
    fn reads_other_dtypes_byte_orders_and_fortran_order() {
        let want = vec![1.0, -2.5, 3.0, 4.0, 0.5, -6.0];
        let f8_be: Vec<u8> = want
            .iter()
            .flat_map(|&v| (v as f64).to_be_bytes())
            .collect();
        let f4_be: Vec<u8> = want.iter().flat_map(|&v: &f32| v.to_be_bytes()).collect();
        let f8_le: Vec<u8> = want
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect();
        for (descr, data) in [(">f8", &f8_be), (">f4", &f4_be), ("<f8", &f8_le)] {
            let (shape, got) = parse_npy_f32(&npy(descr, false, "(2, 3)", data), descr).unwrap();
            assert_eq!((shape, got), (vec![2, 3], want.clone()), "{descr}");
        }
        let ints: [i64; 4] = [-3, 0, 7, 1 << 40];
        let i8le: Vec<u8> = ints.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = parse_npy_f32(&npy("<i8", false, "(4,)", &i8le), "i8")
            .unwrap()
            .1;
        assert_eq!(got, ints.map(|v| v as f32));
        let got = parse_npy_f32(&npy("|u1", false, "(3,)", &[0, 128, 255]), "u1")
            .unwrap()
            .1;
        assert_eq!(got, [0.0, 128.0, 255.0]);
        let got = parse_npy_f32(&npy("|b1", false, "(2,)", &[1, 0]), "b1")
            .unwrap()
            .1;
        assert_eq!(got, [1.0, 0.0]);
        // np.asfortranarray([[1, 2, 3], [4, 5, 6]], 'float32') stores 1, 4, 2, 5, 3, 6.
        let f: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (shape, got) = parse_npy_f32(&npy("<f4", true, "(2, 3)", &f), "F").unwrap();
        assert_eq!(
            (shape, got),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        // A 3-D Fortran array: element (i, j, k) sits at i + 2j + 4k.
        let c: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut fortran = [0f32; 8];
        for i in 0..2 {
            for j in 0..2 {
                for k in 0..2 {
                    fortran[i + 2 * j + 4 * k] = c[4 * i + 2 * j + k];
                }
            }
        }
        let bytes: Vec<u8> = fortran.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy_f32(&npy("<f4", true, "(2, 2, 2)", &bytes), "F3")
                .unwrap()
                .1,
            c
        );
    }

    #[test]
    fn bad_files_are_errors() {
        let good = npy_f32_bytes(&[2, 2], &[1.0; 4]).unwrap();
        let e = |b: &[u8]| parse_npy_f32(b, "in.npy").unwrap_err().to_string();
        assert!(e(b"hello world").contains("not a .npy file"));
        assert!(e(&good[..good.len() - 2]).contains("needs 16 bytes"));
        let mut long = good.clone();
        long.push(0);
        assert!(e(&long).contains("the file has 17"));
        assert!(e(&good[..20]).contains("in.npy: unreadable .npy header"));
        assert!(e(&npy("<f4", false, ")", &[])).contains("unreadable .npy header"));
        assert!(e(&npy("<U3", false, "(1,)", &[0; 12])).contains("expected float32/64"));
        assert!(e(&npy("<c8", false, "(1,)", &[0; 8])).contains("expected float32/64"));
        // A shape whose size overflows, and one that disagrees with the data.
        let huge = "(4294967296, 4294967296, 4294967296)";
        assert!(e(&npy("<f4", false, huge, &[0; 4])).contains("too large"));
        let e2 = e(&npy("<f4", false, "(3, 3)", &[0; 16]));
        assert!(
            e2.contains("needs 36 bytes of data, the file has 16"),
            "{e2}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes after the magic, and a valid file with bytes flipped or cut short,
        /// give a value or an error, never a panic (the test runs in bounded time: no input
        /// makes the reader allocate by the header's word before the length check).
        #[test]
        fn never_panics(
            tail in prop::collection::vec(any::<u8>(), 0..200),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut junk = MAGIC.to_vec();
            junk.extend_from_slice(&tail);
            let _ = parse_npy_f32(&junk, "junk");
            let mut b = npy("<f4", false, "(2, 3)", &[7; 24]);
            for (at, v) in &flips {
                let i = at.index(b.len());
                b[i] = *v;
            }
            let _ = parse_npy_f32(&b, "flipped");
            let _ = parse_npy_f32(&b[..cut.index(b.len() + 1)], "cut");
        }
    }
}
