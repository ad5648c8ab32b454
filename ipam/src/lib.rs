//! Block IPAM (issue #3): not built yet. Pods in the lab take addresses from their node's `spec.podCIDRs`.
