//! One module per command, and the forecasting and language-model pipelines they share.

pub mod evaluate;
pub mod forecast;
pub mod generate;
pub mod language;
pub mod list;
pub mod predict;
pub mod seq2seq;
pub mod train;
