//! How far a running step has got: bytes, rows or objects done of a total, reported by steps
//! as they work and shown by the terminal (never journalled: it changes too often).

#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    pub unit: Unit,
    /// Objects done of all, beside bytes, for steps that move many objects.
    pub objects: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Rows,
    Objects,
}
