//! Level-triggered controllers: each wakes on "something changed" and reconciles the whole
//! picture, so a missed or repeated wake-up never matters.

pub mod desired;
pub mod nodes;
pub mod scheduling;
