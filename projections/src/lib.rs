//! Read models built from the log: the SystemUser table, the audit history,
//! diagnostics and timelines, each rebuildable and answerable as of any past
//! point (L4).
//!
//! The crate is part of the layout from the start so that the dependency
//! rules hold from day one (it may depend on `domain` and `store`; nothing
//! but `cli` depends on it). Its views arrive with the views issue; until
//! then the directory views (`user list`, `sku list`, `group list`) are read
//! from the tenant aggregate, folded as of `--at`.
