//! Cluster configuration objects, validation and the file datastore.
