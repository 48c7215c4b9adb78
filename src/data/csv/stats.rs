//! Column statistics over the chunks of a file: each chunk's taken while it is in cache,
//! merged in file order, the distinct numbers counted per column in parallel.

use super::*;

/// The stats of columns not read yet.
pub(super) fn new_stats(columns: usize) -> Vec<Option<NumberStats>> {
    vec![Some(NumberStats::of(&[])); columns]
}

/// Merges the stats of `chunks` (which follow the rows `stats` has seen) into `stats`, and
/// lets the chunks' own go; then counts the chunks' distinct numbers into each column's set
/// (the columns in parallel; a column whose set is full is passed over).
pub(super) fn merge_stats(stats: &mut [Option<NumberStats>], chunks: &mut [Chunk]) {
    let mut merged = Vec::with_capacity(chunks.len());
    for (k, c) in chunks.iter_mut().enumerate() {
        if c.stats.is_empty() {
            continue;
        }
        merged.push(k);
        for (all, part) in stats.iter_mut().zip(std::mem::take(&mut c.stats)) {
            match (all.as_mut(), part) {
                (Some(a), Some(p)) => a.merge(&p),
                _ => *all = None,
            }
        }
    }
    let chunks = &*chunks;
    stats.par_iter_mut().enumerate().for_each(|(j, all)| {
        if let Some(all) = all {
            for &k in &merged {
                if let Some(v) = chunks[k].parts[j].numbers() {
                    all.count_distinct(v);
                }
            }
        }
    });
}
