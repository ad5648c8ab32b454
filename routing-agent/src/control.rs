//! The control socket served to `starlingctl`.
