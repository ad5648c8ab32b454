//! Lab library.
