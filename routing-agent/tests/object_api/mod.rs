//! A stateful fake Kubernetes API server, next to the scripted `fake_api`
//! (whose HTTP reading and writing it shares): objects kept in memory per
//! collection, with the API server's write semantics a compare-and-swap
//! user depends on. One `resourceVersion` counter for everything (etcd's
//! revision); a create of an existing name is 409 AlreadyExists; a PUT
//! whose `metadata.resourceVersion` is not the stored one, or a DELETE
//! whose precondition is not met, is 409 Conflict; a missing object is
//! 404 NotFound. The garbage collector is not there: dependents
//! (`ownerReferences`) outlive their owner, so a test sees what the client
//! itself deleted. Responses are shaped as
//! the real server's: the object written, lists with their
//! `resourceVersion`, `Status` objects for errors.
//!
//! Include it with `mod fake_api; mod object_api;`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use super::fake_api::{read_request, respond, status, Request};

/// One kind's collection.
struct Collection {
    api_version: String,
    kind: String,
    /// `plural.group`, as the API server names the resource in messages.
    resource: String,
    objects: BTreeMap<String, Value>,
}

#[derive(Default)]
struct State {
    /// By collection path (`/apis/starling.dev/v1alpha1/ipamblocks`).
    collections: HashMap<String, Collection>,
    revision: u64,
    /// 409s answered, by reason.
    conflicts: BTreeMap<String, u64>,
    writes: u64,
}

#[derive(Clone)]
pub struct ObjectApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ObjectApi {
    /// Starts serving on 127.0.0.1 (needs a tokio runtime).
    pub async fn start() -> ObjectApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ObjectApi::serve_on(listener)
    }

    /// Starts serving on `listener` (bound in another network namespace,
    /// say); needs a tokio runtime.
    pub fn start_on(listener: std::net::TcpListener) -> ObjectApi {
        listener.set_nonblocking(true).expect("nonblocking");
        ObjectApi::serve_on(TcpListener::from_std(listener).expect("listener"))
    }

    fn serve_on(listener: TcpListener) -> ObjectApi {
        let api = ObjectApi {
            addr: listener.local_addr().expect("addr"),
            state: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // Head and body go in two writes: no Nagle wait between.
                let _ = stream.set_nodelay(true);
                tokio::spawn(server.clone().serve(stream));
            }
        });
        api
    }

    /// A kube client talking to this server (needs a tokio runtime).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Serves the objects of `kind` under `path`
    /// (`/apis/starling.dev/v1alpha1/ipamblocks`, `/api/v1/namespaces/default/pods`).
    pub fn collection(&self, path: &str, api_version: &str, kind: &str) {
        let (group, plural) = match path.strip_prefix("/apis/") {
            Some(rest) => (rest.split('/').next().unwrap_or(""), last(path)),
            None => ("", last(path)),
        };
        let resource = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        self.state.lock().unwrap().collections.insert(
            path.to_string(),
            Collection {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                resource,
                objects: BTreeMap::new(),
            },
        );
    }

    /// Stores `object` under `path` as a create would.
    pub fn insert(&self, path: &str, object: Value) {
        let mut s = self.state.lock().unwrap();
        let (code, body) = s.create(path, object);
        assert_eq!(code, 201, "{body}");
    }

    /// Removes the object `name` from `path`, as a delete would.
    pub fn remove(&self, path: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let (code, body) = s.delete(path, name, &Value::Null);
        assert_eq!(code, 200, "{body}");
    }

    /// The objects under `path`, by name.
    pub fn objects(&self, path: &str) -> BTreeMap<String, Value> {
        let s = self.state.lock().unwrap();
        s.collections
            .get(path)
            .map(|c| c.objects.clone())
            .unwrap_or_default()
    }

    /// The 409s answered so far, by reason (`Conflict`, `AlreadyExists`).
    pub fn conflicts(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().conflicts.clone()
    }

    /// Successful writes so far.
    pub fn writes(&self) -> u64 {
        self.state.lock().unwrap().writes
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        while let Some(request) = read_request(&mut stream, &mut buf).await {
            let (code, body) = self.state.lock().unwrap().answer(&request);
            if respond(&mut stream, code, &body).await.is_err() {
                return;
            }
        }
    }
}

fn last(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

type Answer = (u16, Value);

impl State {
    fn answer(&mut self, r: &Request) -> Answer {
        if self.collections.contains_key(&r.path) {
            return match r.method.as_str() {
                "GET" => self.list(&r.path),
                "POST" => self.create(&r.path, r.json()),
                _ => (405, status(405, "MethodNotAllowed", &r.method)),
            };
        }
        let Some((path, name)) = r.path.rsplit_once('/') else {
            return (404, status(404, "NotFound", "no such path"));
        };
        if !self.collections.contains_key(path) {
            return (
                404,
                status(404, "NotFound", &format!("no collection {path}")),
            );
        }
        match r.method.as_str() {
            "GET" => match self.collections[path].objects.get(name) {
                Some(o) => (200, o.clone()),
                None => self.not_found(path, name),
            },
            "PUT" => self.replace(path, name, r.json()),
            "DELETE" => self.delete(path, name, &r.json()),
            _ => (405, status(405, "MethodNotAllowed", &r.method)),
        }
    }

    fn list(&self, path: &str) -> Answer {
        let c = &self.collections[path];
        let items: Vec<Value> = c.objects.values().cloned().collect();
        let list = json!({"apiVersion": c.api_version, "kind": format!("{}List", c.kind),
            "metadata": {"resourceVersion": self.revision.to_string()}, "items": items});
        (200, list)
    }

    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.writes += 1;
        self.revision.to_string()
    }

    fn conflict(&mut self, reason: &str, message: String) -> Answer {
        *self.conflicts.entry(reason.to_string()).or_default() += 1;
        (409, status(409, reason, &message))
    }

    fn not_found(&self, path: &str, name: &str) -> Answer {
        let resource = &self.collections[path].resource;
        (
            404,
            status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        )
    }

    fn create(&mut self, path: &str, mut object: Value) -> Answer {
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
            return (422, status(422, "Invalid", "metadata.name: Required value"));
        };
        let c = &self.collections[path];
        if c.objects.contains_key(&name) {
            let message = format!("{} \"{name}\" already exists", c.resource);
            return self.conflict("AlreadyExists", message);
        }
        let (api_version, kind) = (c.api_version.clone(), c.kind.clone());
        let rv = self.next_revision();
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = json!(rv);
        meta["uid"] = json!(format!("uid-{rv}"));
        meta["generation"] = json!(1);
        meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        let c = self.collections.get_mut(path).expect("checked");
        c.objects.insert(name, object.clone());
        (201, object)
    }

    fn replace(&mut self, path: &str, name: &str, mut object: Value) -> Answer {
        let c = &self.collections[path];
        let Some(current) = c.objects.get(name) else {
            return self.not_found(path, name);
        };
        let resource = c.resource.clone();
        let Some(rv) = object["metadata"]["resourceVersion"].as_str() else {
            let m = "metadata.resourceVersion: Invalid value: 0: must be specified for an update";
            return (422, status(422, "Invalid", m));
        };
        if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
            let message = format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            );
            return self.conflict("Conflict", message);
        }
        let kept = current["metadata"].clone();
        let rv = self.next_revision();
        let meta = &mut object["metadata"];
        for key in ["uid", "creationTimestamp", "generation"] {
            meta[key] = kept[key].clone();
        }
        meta["resourceVersion"] = json!(rv);
        let c = self.collections.get_mut(path).expect("checked");
        object["apiVersion"] = json!(c.api_version);
        object["kind"] = json!(c.kind);
        c.objects.insert(name.to_string(), object.clone());
        (200, object)
    }

    fn delete(&mut self, path: &str, name: &str, options: &Value) -> Answer {
        let c = &self.collections[path];
        let Some(current) = c.objects.get(name) else {
            return self.not_found(path, name);
        };
        let meta = &current["metadata"];
        let preconditions = &options["preconditions"];
        for (key, field) in [("resourceVersion", "ResourceVersion"), ("uid", "UID")] {
            if let Some(want) = preconditions[key].as_str() {
                let have = meta[key].as_str().unwrap_or("");
                if want != have {
                    let message = format!(
                        "Precondition failed: {field} in precondition: {want}, \
                         {field} in object meta: {have}"
                    );
                    return self.conflict("Conflict", message);
                }
            }
        }
        self.next_revision();
        let c = self.collections.get_mut(path).expect("checked");
        let deleted = c.objects.remove(name).expect("checked");
        (200, deleted)
    }
}
