//! starling-agent library.
