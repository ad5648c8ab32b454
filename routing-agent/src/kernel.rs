//! Kernel routes over rtnetlink.
