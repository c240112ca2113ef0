//! (blocks to be written)
