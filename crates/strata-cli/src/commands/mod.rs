//! One module per command.

pub mod evaluate;
pub mod list;
pub mod predict;
pub mod train;
