//! Buffers whose size a request or a job decides, reserved fallibly: a size the machine cannot
//! hold fails the one job or request that asked for it, where an ordinary allocation would
//! abort the whole process (and every other tenant's work with it).

use ndarray::Array2;

/// A buffer of `bytes` could not be reserved.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error(
    "could not reserve {bytes} bytes of memory for {what}; the job or request asks for more than this node can hold"
)]
pub struct AllocError {
    pub bytes: usize,
    pub what: &'static str,
}

/// A vector of `len` copies of `value`, or an error where the memory cannot be had.
pub fn filled<T: Clone>(len: usize, value: T, what: &'static str) -> Result<Vec<T>, AllocError> {
    let err = || AllocError {
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
        what,
    };
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| err())?;
    v.resize(len, value);
    Ok(v)
}

/// A `rows × cols` matrix of zeros, or an error where the memory cannot be had.
pub fn zeros(rows: usize, cols: usize, what: &'static str) -> Result<Array2<f32>, AllocError> {
    let len = rows.checked_mul(cols).ok_or(AllocError {
        bytes: usize::MAX,
        what,
    })?;
    let v = filled(len, 0f32, what)?;
    Ok(Array2::from_shape_vec((rows, cols), v).expect("rows × cols elements"))
}

/// The rows `idx` of `x` (as `ArrayBase::select` makes them), reserved fallibly.
pub fn select_rows(
    x: ndarray::ArrayView2<f32>,
    idx: &[usize],
    what: &'static str,
) -> Result<Array2<f32>, AllocError> {
    let mut out = zeros(idx.len(), x.ncols(), what)?;
    for (mut row, &i) in out.rows_mut().into_iter().zip(idx) {
        row.assign(&x.row(i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        let e = zeros(1 << 40, 1 << 20, "a table").unwrap_err();
        assert_eq!(e.what, "a table");
        let e = zeros(200_000, 200_000 * 1000, "a table").unwrap_err();
        assert!(e.to_string().contains("could not reserve"), "{e}");
        assert!(filled(usize::MAX / 8, 0u64, "x").is_err());
    }

    #[test]
    fn a_possible_size_is_the_buffer_asked_for() {
        let z = zeros(3, 2, "t").unwrap();
        assert_eq!(z.dim(), (3, 2));
        assert!(z.iter().all(|&v| v == 0.0));
        let x = ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let s = select_rows(x.view(), &[2, 0], "t").unwrap();
        assert_eq!(s, ndarray::array![[5.0, 6.0], [1.0, 2.0]]);
    }
}
