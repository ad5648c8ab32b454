//! NetworkPolicy controller (issue #7): not built yet.
