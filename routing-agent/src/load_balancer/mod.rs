//! LoadBalancer addresses without MetalLB (issue #14): IPPools with
//! `allowedUses: [LoadBalancer]` give Services of type LoadBalancer their
//! addresses in `status.loadBalancer.ingress`, which the nodes then
//! announce (`route_policy::services`).
//!
//! [`plan`] decides, purely, from the pools and the Services; the
//! [`LoadBalancerAllocator`] (Kubernetes datastore) runs it on one agent at
//! a time, the holder of a `coordination.k8s.io` Lease, and writes each
//! Service's status conditional on its resourceVersion; refusals become
//! Events on the Service.

mod allocator;
mod lease;
mod plan;

pub use allocator::{LoadBalancerAllocator, LEASE_NAME};
pub use plan::{
    plan, Action, LbService, Request, ServiceKey, CALICO_LOAD_BALANCER_CLASS,
    LOAD_BALANCER_IPS_ANNOTATION,
};
