//! One module per command: each turns its flags into a call of `strata::run` and prints.

pub mod evaluate;
pub mod generate;
pub mod list;
pub mod predict;
pub mod train;
