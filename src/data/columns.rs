//! A dataset as read, column by column, each column in the segments it was read in: what the
//! readers make. An upload is profiled and stored straight from it (the stored form's rows
//! are assembled a part at a time, see `storage::ColumnParts`); [`Columns::assemble`] makes the
//! in-memory [`Dataset`] when one is needed.

use ndarray::Array2;
use rayon::prelude::*;

use super::storage::{self, ColumnParts};
use super::table::{BuiltColumn, NumberStats};
use super::{DataError, Dataset, Summary, classes_of, outputs_of, release_memory};
use crate::nn::portable::tabular::{ColumnSchema, RawColumn};
use crate::nn::{ClassLabel, Targets};

pub struct Columns {
    pub(super) features: Vec<BuiltColumn>,
    pub targets: Targets,
    /// The rows read that are kept (their target is present); `None` when all are.
    pub(super) keep: Option<Vec<bool>>,
    /// The rows kept.
    rows: usize,
    pub target_names: Vec<String>,
    pub dropped_rows: u64,
    /// Every kept row's stored bytes were handed out as the file was read
    /// (`CsvStream::stream_rows`).
    streamed: bool,
    /// A CSV's dialect, as it was read.
    pub dialect: Option<super::csv::Dialect>,
    /// The task the upload says its target is for (`?task=`); inferred when `None`.
    pub task: Option<crate::nn::run::spec::Task>,
}

impl Columns {
    /// The dataset of finished feature columns and no target (`?labels=none`): every row
    /// kept, no target columns.
    pub(super) fn without_target(
        features: Vec<BuiltColumn>,
        rows: usize,
    ) -> Result<Columns, DataError> {
        let none = Targets::Values(Array2::zeros((rows, 0)));
        Columns::new(features, none, None, rows, vec![])
    }

    /// The dataset of finished feature columns (every one cut into segments at the same rows)
    /// and the targets of the rows `keep` marks (all rows when `None`); the columns' missing
    /// counts are then those of the rows kept.
    pub(super) fn new(
        mut features: Vec<BuiltColumn>,
        targets: Targets,
        keep: Option<Vec<bool>>,
        read_rows: usize,
        target_names: Vec<String>,
    ) -> Result<Columns, DataError> {
        let rows = match &keep {
            Some(k) => k.iter().filter(|&&k| k).count(),
            None => read_rows,
        };
        if rows == 0 {
            return Err(DataError::new(format!(
                "every row's target ({}) is missing; there is nothing to learn from",
                target_names.join(", ")
            )));
        }
        // A column cut otherwise, or targets of another length, would be a reader's bug.
        let lens = segment_lens(&features);
        if features
            .iter()
            .any(|c| !c.segments.iter().map(Vec::len).eq(lens.iter().copied()))
            || (!features.is_empty() && lens.iter().sum::<usize>() != read_rows)
            || keep.as_ref().is_some_and(|k| k.len() != read_rows)
            || targets.len() != rows
        {
            return Err(DataError::new("internal: the columns and targets disagree"));
        }
        if let Some(k) = &keep {
            features.par_iter_mut().for_each(|c| {
                c.raw.schema.missing = c
                    .values()
                    .zip(k)
                    .filter(|&(v, &kept)| kept && v.is_nan())
                    .count() as u64;
            });
        }
        Ok(Columns {
            features,
            targets,
            keep,
            rows,
            target_names,
            dropped_rows: (read_rows - rows) as u64,
            streamed: false,
            dialect: None,
            task: None,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn inputs(&self) -> usize {
        self.features.len()
    }

    /// Target columns: 1 for labels.
    pub fn outputs(&self) -> usize {
        outputs_of(&self.targets)
    }

    /// As [`Dataset::classes`].
    pub fn classes(&self) -> Option<Vec<ClassLabel>> {
        classes_of(&self.targets)
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.features
            .iter()
            .map(|c| c.raw.name().to_owned())
            .collect()
    }

    pub fn raw_columns(&self) -> impl Iterator<Item = &RawColumn> {
        self.features.iter().map(|c| &c.raw)
    }

    pub fn schema(&self) -> Vec<ColumnSchema> {
        self.raw_columns().map(|c| c.schema.clone()).collect()
    }

    pub fn summary(&self) -> Summary {
        Summary::new(self.rows, self.schema(), &self.targets, self.dropped_rows)
    }

    /// Feature `j`'s stats taken as it was read, when they cover exactly the rows kept (no
    /// row was left out for a missing target).
    pub fn stats(&self, j: usize) -> Option<&NumberStats> {
        match self.keep {
            None => self.features[j].stats.as_ref(),
            Some(_) => None,
        }
    }

    /// Calls `f` with feature `j`'s values in the rows kept, in order (a loop over each
    /// segment, which an iterator chain over them all was several times slower than).
    pub fn for_each_kept(&self, j: usize, mut f: impl FnMut(f32)) {
        let segments = &self.features[j].segments;
        match self.keep.as_deref() {
            None => {
                for segment in segments {
                    for &v in segment {
                        f(v);
                    }
                }
            }
            Some(keep) => {
                let mut keep = keep.iter();
                for segment in segments {
                    for (&v, &kept) in segment.iter().zip(keep.by_ref()) {
                        if kept {
                            f(v);
                        }
                    }
                }
            }
        }
    }

    /// Feature `j`'s values in the first `n` rows kept (fewer when there are fewer).
    pub fn first_kept(&self, j: usize, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n.min(self.rows));
        let mut keep = self.keep.as_deref().map(|k| k.iter());
        'segments: for segment in &self.features[j].segments {
            for &v in segment {
                if out.len() == n {
                    break 'segments;
                }
                if keep.as_mut().is_none_or(|k| k.next() == Some(&true)) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Marks the columns as read by a stream that handed out the stored bytes of all `rows`
    /// rows kept, in order (a count that differs leaves them unmarked).
    pub(super) fn set_streamed(&mut self, rows: usize) {
        self.streamed = rows == self.rows;
    }

    /// Whether the stored bytes of every row were handed out as the file was read (see
    /// `CsvStream::stream_rows`): the stored form is then [`stored_ends`](Self::stored_ends)'
    /// head, those bytes in the order handed out, and its tail.
    pub fn streamed(&self) -> bool {
        self.streamed
    }

    /// The stored form's bytes before and after the rows' (for a [`streamed`](Self::streamed)
    /// upload).
    pub fn stored_ends(&self) -> (Vec<u8>, Vec<u8>) {
        storage::streamed_ends(self)
    }

    /// The stored form a part at a time: what [`Dataset::to_bytes`] gives for
    /// [`assemble`](Self::assemble)'s dataset, each part's rows assembled from the columns
    /// when it is asked for.
    pub fn into_stored_parts(self) -> ColumnParts {
        storage::column_parts(self, storage::PART_BYTES)
    }

    /// The dataset in memory: its rows assembled from the columns.
    pub fn assemble(self) -> Result<Dataset, DataError> {
        let Columns {
            mut features,
            targets,
            keep,
            rows: n,
            target_names,
            dropped_rows,
            ..
        } = self;
        let width = features.len();
        let lens = segment_lens(&features);
        // The work in units of at most BLOCK rows of one segment: (segment, first row in it,
        // end, rows of x it fills).
        const BLOCK: usize = 4096;
        let mut units: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut seg_start = 0;
        for (k, &len) in lens.iter().enumerate() {
            let mut from = 0;
            while from < len {
                let to = (from + BLOCK).min(len);
                let fills = match &keep {
                    Some(kp) => kp[seg_start + from..seg_start + to]
                        .iter()
                        .filter(|&&b| b)
                        .count(),
                    None => to - from,
                };
                units.push((k, from, to, fills));
                from = to;
            }
            seg_start += len;
        }
        let starts: Vec<usize> = lens
            .iter()
            .scan(0, |s, &l| {
                let at = *s;
                *s += l;
                Some(at)
            })
            .collect();
        let mut x = Array2::<f32>::zeros((n, width));
        {
            let mut outs: Vec<&mut [f32]> = Vec::with_capacity(units.len());
            let mut rest = x.as_slice_mut().expect("a new array is in standard layout");
            for u in &units {
                let (a, b) = std::mem::take(&mut rest).split_at_mut(u.3 * width);
                outs.push(a);
                rest = b;
            }
            // Filled from the last units back, a round at a time: after each round the columns
            // give back the segments (or the part of one) it copied, so the features are held
            // about once, not as columns and as rows together. Within a round, units are written
            // in parallel, row by row from the columns.
            const ROUNDS: usize = 8;
            let per_round = units.len().div_ceil(ROUNDS).max(1);
            let mut end = units.len();
            while end > 0 {
                let start = end.saturating_sub(per_round);
                {
                    let features = &features;
                    let keep = &keep;
                    let units = &units;
                    let starts = &starts;
                    outs[start..end]
                        .par_iter_mut()
                        .enumerate()
                        .for_each(|(i, out)| {
                            let (k, from, to, _) = units[start + i];
                            let cols: Vec<&[f32]> =
                                features.iter().map(|c| &c.segments[k][..]).collect();
                            let mut rows = out.chunks_exact_mut(width.max(1));
                            for r in from..to {
                                if let Some(kp) = keep
                                    && !kp[starts[k] + r]
                                {
                                    continue;
                                }
                                if let Some(row) = rows.next() {
                                    for (o, c) in row.iter_mut().zip(&cols) {
                                        *o = c[r];
                                    }
                                }
                            }
                        });
                }
                // Units from `start` on are copied: their segments go, and the one `start`
                // begins inside keeps only the rows before it.
                let (k0, from0, _, _) = units[start];
                for c in &mut features {
                    for s in &mut c.segments[k0 + 1..] {
                        *s = Vec::new();
                    }
                    c.segments[k0].truncate(from0);
                    c.segments[k0].shrink_to_fit();
                }
                release_memory();
                end = start;
            }
        }
        let columns: Vec<RawColumn> = features.into_iter().map(|c| c.raw).collect();
        Ok(Dataset {
            feature_names: columns.iter().map(|c| c.name().to_owned()).collect(),
            target_names,
            x,
            targets,
            columns,
            dropped_rows,
        })
    }
}

/// The rows of each segment (the first column's: every column is cut alike).
fn segment_lens(features: &[BuiltColumn]) -> Vec<usize> {
    features
        .first()
        .map(|c| c.segments.iter().map(Vec::len).collect())
        .unwrap_or_default()
}

/// One segment per column, from the rows of a dataset in memory.
impl From<Dataset> for Columns {
    fn from(d: Dataset) -> Columns {
        let rows = d.rows();
        let features = d
            .columns
            .into_iter()
            .zip(d.x.columns())
            .map(|(raw, values)| BuiltColumn {
                raw,
                segments: vec![values.to_vec()],
                stats: None,
            })
            .collect();
        Columns {
            features,
            targets: d.targets,
            keep: None,
            rows,
            target_names: d.target_names,
            dropped_rows: d.dropped_rows,
            streamed: false,
            dialect: None,
            task: None,
        }
    }
}
