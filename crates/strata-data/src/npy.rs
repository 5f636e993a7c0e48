//! NumPy's `.npy` format for float32 arrays (`np.save("x.npy", x.astype("float32"))`): what
//! `strata predict --weights` reads as a batch of images, NCHW.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses a `.npy` byte buffer holding a little-endian float32 array in C order: its shape
/// and values.
///
/// # Errors
/// [`Error::Invalid`] naming `source` for a bad magic string or header, another dtype, Fortran
/// order, or a data length that does not match the shape.
pub fn parse_npy_f32(bytes: &[u8], source: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |m: String| Error::Invalid(format!("{source}: {m}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or unreadable header".into()))?;
    let field = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(format!("header has no '{key}'")))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| bad(format!("bad header near '{key}'")))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    if !(descr.starts_with("'<f4'") || descr.starts_with("'=f4'")) {
        let d = descr.split(',').next().unwrap_or(descr);
        return Err(bad(format!(
            "dtype {d}: expected little-endian float32 ('<f4'); save with x.astype('float32')"
        )));
    }
    if field("fortran_order")?.starts_with("True") {
        return Err(bad(
            "Fortran order: save a C-ordered array (np.ascontiguousarray)".into(),
        ));
    }
    let shape_text = field("shape")?;
    let close = shape_text
        .find(')')
        .ok_or_else(|| bad("bad shape in header".into()))?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("bad shape {}", &shape_text[..=close])))?;
    let n: usize = shape.iter().product();
    let data = &bytes[start + len..];
    if data.len() != n * 4 {
        return Err(bad(format!(
            "shape {shape:?} needs {} bytes of data, the file has {}",
            n * 4,
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, values))
}

/// Reads a float32 `.npy` file.
///
/// # Errors
/// I/O errors, and those of [`parse_npy_f32`].
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    parse_npy_f32(&bytes, &path.display().to_string())
}

/// Writes `values` of `shape` as a float32 `.npy` (version 1.0) byte buffer.
///
/// # Panics
/// When `values` does not hold `shape`'s product of values.
pub fn npy_f32_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        values.len(),
        "shape and values disagree"
    );
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Pad with spaces so that the data starts on a 64-byte boundary; end with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_numpys_header() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = npy_f32_bytes(&[2, 3, 4], &values);
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        assert_eq!(
            parse_npy_f32(&bytes, "x").unwrap(),
            (vec![2, 3, 4], values.clone())
        );
        // numpy 2's own header for np.zeros((1, 2), 'float32'), byte for byte.
        let mut np = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        h.push_str(&" ".repeat(118 - h.len() - 1));
        h.push('\n');
        np.extend_from_slice(h.as_bytes());
        np.extend_from_slice(&[0; 8]);
        assert_eq!(
            parse_npy_f32(&np, "np").unwrap(),
            (vec![1, 2], vec![0.0, 0.0])
        );
        // A 1-D shape `(3,)`.
        let bytes = npy_f32_bytes(&[3], &values[..3]);
        assert_eq!(parse_npy_f32(&bytes, "x").unwrap().0, vec![3]);
    }

    #[test]
    fn bad_files_are_errors() {
        let good = npy_f32_bytes(&[2, 2], &[1.0; 4]);
        let e = |b: &[u8]| parse_npy_f32(b, "in.npy").unwrap_err().to_string();
        assert!(e(b"hello world").contains("not a .npy file"));
        assert!(e(&good[..good.len() - 2]).contains("needs 16 bytes"));
        let swap = |from: &[u8], to: &[u8]| {
            let mut b = good.clone();
            let at = b.windows(from.len()).position(|w| w == from).unwrap();
            b[at..at + to.len()].copy_from_slice(to);
            b
        };
        assert!(e(&swap(b"<f4", b"<f8")).contains("expected little-endian float32"));
        assert!(e(&swap(b"False", b"True ")).contains("Fortran order"));
        assert!(e(&good[..20]).contains("truncated"));
    }
}
