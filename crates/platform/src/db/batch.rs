//! Batches in a few statements: many rows in one multi-row `INSERT … VALUES` (or an `UPDATE`
//! fed by `WITH … AS (VALUES …)`), many keys in one `… IN (…)`, cut into chunks whose sizes are
//! powers of two so each connection prepares one of a few statement texts.

use super::{Arg, DbResult, Row, Target, Tx, sql_assembled};

/// The most rows one multi-row statement carries.
const MAX_ROWS_PER_STATEMENT: usize = 64;
/// The most keys one `IN (…)` list carries.
const MAX_KEYS_PER_STATEMENT: usize = 512;

/// Splits `n` rows into chunks whose sizes are powers of two (largest first, at most `max`, a
/// power of two), so a multi-row statement has one of a few texts and the driver prepares each
/// once instead of a new text for every batch size.
fn chunk_sizes(mut n: usize, max: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= max { max } else { 1 << n.ilog2() };
        n -= size;
        Some(size)
    })
}

/// Writes many rows with few statements: `{head} VALUES ($1, …), (…) {tail}` for each chunk of
/// `rows` (every row binds the same number of arguments), inside `tx`: a multi-row `INSERT`, or
/// an `UPDATE` that reads its rows from a `WITH` list. Returns what the statements' `RETURNING`
/// clauses gave, in no particular order.
pub async fn for_rows(
    tx: &mut Tx,
    head: &str,
    tail: &str,
    rows: Vec<Vec<Arg>>,
) -> DbResult<Vec<Row>> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(Vec::new());
    };
    debug_assert!(rows.iter().all(|r| r.len() == width));
    let mut rows = rows.into_iter();
    let mut returned = Vec::new();
    for size in chunk_sizes(rows.len(), MAX_ROWS_PER_STATEMENT) {
        let values = (0..size)
            .map(|r| {
                let cells = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>();
                format!("({})", cells.join(", "))
            })
            .collect::<Vec<_>>();
        let mut q = sql_assembled(format!("{head} VALUES {} {tail}", values.join(", ")));
        for row in rows.by_ref().take(size) {
            q.args.extend(row);
        }
        returned.extend(q.fetch_all(&mut *tx).await?);
    }
    Ok(returned)
}

/// Runs `{head} ($k, $k+1, …){tail}` for chunks of `keys`, where `first` arguments come before
/// the list and are bound again for each chunk: a read or an update of many rows by key with a
/// few statements. Returns every row the statements return.
pub async fn for_keys<'a>(
    target: impl Into<Target<'a>>,
    head: &str,
    tail: &str,
    first: Vec<Arg>,
    keys: impl IntoIterator<Item = impl Into<Arg>>,
) -> DbResult<Vec<Row>> {
    let mut target = target.into();
    let keys: Vec<Arg> = keys.into_iter().map(Into::into).collect();
    let mut keys = keys.into_iter();
    let mut returned = Vec::new();
    for size in chunk_sizes(keys.len(), MAX_KEYS_PER_STATEMENT) {
        let list = (1..=size)
            .map(|i| format!("${}", first.len() + i))
            .collect::<Vec<_>>();
        let mut q = sql_assembled(format!("{head} ({}){tail}", list.join(", ")));
        q.args.extend(first.iter().cloned());
        q.args.extend(keys.by_ref().take(size));
        returned.extend(q.fetch_all(target.reborrow()).await?);
    }
    Ok(returned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let sizes = |n| chunk_sizes(n, 64).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(37), vec![32, 4, 1]);
        assert_eq!(sizes(64), vec![64]);
        assert_eq!(sizes(200), vec![64, 64, 64, 8]);
        for n in 0..300 {
            assert_eq!(chunk_sizes(n, 64).sum::<usize>(), n);
            assert!(chunk_sizes(n, 512).all(|size| size.is_power_of_two() && size <= 512));
        }
    }
}
