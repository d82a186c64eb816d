//! `wsring dev`: a gateway and N nodes in one command.
//!
//! On the embedded in-memory backend (the default) the nodes are task groups
//! inside this process, sharing one [`MemoryBackend`]. With `--cluster URL`
//! they are `wsring node` child processes on that backend
//! ([`crate::processes`]); the gateway stays in this process either way.
//!
//! Nodes here are real nodes — their own listener, membership handle and
//! broker connection — so everything the cluster does across machines happens
//! here too, over loopback. The launcher lets the HTTP API add, drain and
//! crash nodes: a crash cancels every task of the node at once (no
//! deregistration, no close frames), and the rest of the cluster only finds
//! out through the heartbeat TTL, exactly as with a killed process.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use wsring_cluster::memory::{MemoryBackend, MemoryBroker};
use wsring_cluster::{Membership, StreamStore};
use wsring_gateway::{GatewayHandle, LaunchError, Launched, Launcher, RemoveMode};
use wsring_node::{NodeDeps, NodeError, NodeHandle};

use crate::processes::ProcessNodes;
use crate::settings::{Common, SettingsError};

/// Why the dev cluster could not start.
#[derive(Debug, Error)]
pub enum DevError {
    /// Binding a listener failed (port in use?).
    // The cause is in the message, not a `source()`: a chain would repeat it.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// The launcher cannot find its own executable to start node processes.
    #[error("cannot locate the wsring executable to start node processes: {0}")]
    Exe(std::io::Error),
    /// A node failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The backend failed.
    #[error(transparent)]
    Cluster(#[from] wsring_cluster::ClusterError),
    /// A node process failed to start.
    #[error("{0}")]
    Launch(String),
}

/// `wsring dev`: the options of a dev cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Number of nodes to start (at least 1; add more later with POST
    /// /api/nodes).
    #[arg(long, env = "WSRING_NODES", default_value_t = 3)]
    pub nodes: usize,
    /// Port of the dev gateway: WebSocket endpoint, HTTP API and dashboard
    /// (0: any free port).
    #[arg(long, env = "WSRING_PORT", default_value_t = 7000)]
    pub port: u16,
    /// Address `wsring dev` binds the gateway and its nodes to.
    #[arg(long, env = "WSRING_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Shared settings.
    #[command(flatten)]
    pub common: Common,
    /// The `wsring` executable for node processes (`--cluster` only).
    /// Default: this process's own executable.
    #[arg(skip)]
    pub exe: Option<std::path::PathBuf>,
}

impl DevOptions {
    /// Rejects settings a dev cluster cannot run with.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.common.validate()?;
        if self.nodes == 0 {
            // A cluster without nodes answers 503 to everyone, forever.
            return Err(SettingsError::Invalid(
                "nodes",
                "must be at least 1 (add more later with POST /api/nodes)".into(),
            ));
        }
        Ok(())
    }
}

/// The nodes of a dev cluster; also its [`Launcher`].
pub struct DevNodes {
    backend: MemoryBackend,
    /// Each node's broker connection, for fault injection.
    brokers: Mutex<BTreeMap<String, Arc<MemoryBroker>>>,
    opts: DevOptions,
    nodes: Mutex<BTreeMap<String, NodeHandle>>,
    next: AtomicU64,
    security: Arc<wsring_auth::Security>,
}

/// Where the nodes of a dev cluster run.
pub enum Nodes {
    /// Task groups in this process, on the memory backend.
    Memory(Arc<DevNodes>),
    /// Child processes on a real backend.
    Processes(Arc<ProcessNodes>),
}

/// `wsring dev`'s authentication: open unless keys are given, and then the
/// same checks as `node` and `gateway`.
fn dev_security(opts: &DevOptions) -> Result<Arc<wsring_auth::Security>, DevError> {
    let security = opts
        .common
        .auth_settings()
        .build(false)
        .map_err(|e| DevError::Launch(e.to_string()))?;
    Ok(Arc::new(security))
}

/// A running dev cluster.
pub struct DevCluster {
    /// The nodes.
    pub nodes: Nodes,
    common: Common,
    gateway: GatewayHandle,
    membership: Arc<Membership>,
    stop: CancellationToken,
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, DevError> {
    let addr = format!("{host}:{port}");
    // Only the gateway's fixed port is the user's to change; node ports are
    // ephemeral, so a failure there is about the host.
    let flag = if port == 0 {
        "--host"
    } else {
        "--port or --host"
    };
    wsring_http::serve::bind(&addr)
        .await
        .map_err(|e| DevError::Bind {
            reason: crate::roles::bind_reason(&e, flag),
            addr,
        })
}

impl DevNodes {
    /// Starts one more node with the next free id (`n1`, `n2`, …).
    pub async fn add(&self) -> Result<NodeHandle, DevError> {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("n{n}");
        let listener = bind(&self.opts.host, 0).await?;
        let kill = CancellationToken::new();
        let membership = Membership::start(
            self.backend.registry.clone(),
            self.opts.common.membership(),
            kill.clone(),
        )
        .await?;
        let (broker, inbox) = self.backend.hub.connect();
        self.brokers
            .lock()
            .await
            .insert(id.clone(), Arc::clone(&broker));
        let streams: Arc<dyn StreamStore> = self.backend.streams.clone();
        let handle = wsring_node::start(
            self.opts.common.node_config(&id),
            listener,
            NodeDeps {
                membership,
                broker,
                inbox,
                streams: Some(streams),
                server_rooms: self.backend.rooms.clone(),
                hook_queue: Some(self.backend.hook_queue.clone()),
                security: Arc::clone(&self.security),
                kill,
            },
        )
        .await?;
        self.nodes.lock().await.insert(id, handle.clone());
        Ok(handle)
    }

    /// Live nodes by id.
    pub async fn handles(&self) -> BTreeMap<String, NodeHandle> {
        self.nodes.lock().await.clone()
    }

    /// The shared memory backend (for tests that inject faults).
    pub fn backend(&self) -> &MemoryBackend {
        &self.backend
    }

    /// Node `id`'s broker connection (to sever and restore it in tests).
    pub async fn broker(&self, id: &str) -> Option<Arc<MemoryBroker>> {
        self.brokers.lock().await.get(id).cloned()
    }
}

#[async_trait]
impl Launcher for DevNodes {
    async fn add(&self) -> Result<Launched, LaunchError> {
        let h = DevNodes::add(self)
            .await
            .map_err(|e| LaunchError::Failed(e.to_string()))?;
        Ok(Launched {
            id: h.id().to_owned(),
            url: h.url().to_owned(),
        })
    }

    async fn remove(&self, id: &str, mode: RemoveMode) -> Result<(), LaunchError> {
        let handle = self
            .nodes
            .lock()
            .await
            .remove(id)
            .ok_or_else(|| LaunchError::NotFound(id.to_owned()))?;
        match mode {
            RemoveMode::Crash => handle.crash().await,
            RemoveMode::Drain => {
                tokio::spawn(async move { handle.drain().await });
            }
        }
        Ok(())
    }
}

impl DevCluster {
    /// Starts the gateway and the initial nodes.
    pub async fn start(opts: DevOptions) -> Result<DevCluster, DevError> {
        match opts.common.cluster.clone() {
            Some(url) => Self::start_processes(opts, url).await,
            None => Self::start_memory(opts).await,
        }
    }

    async fn start_memory(opts: DevOptions) -> Result<DevCluster, DevError> {
        let security = dev_security(&opts)?;
        let listener = bind(&opts.host, opts.port).await?;
        let stop = CancellationToken::new();
        let backend = MemoryBackend::new(opts.common.retention());
        let nodes = Arc::new(DevNodes {
            backend: backend.clone(),
            brokers: Mutex::new(BTreeMap::new()),
            opts: opts.clone(),
            nodes: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            security: Arc::clone(&security),
        });
        for _ in 0..opts.nodes {
            nodes.add().await?;
        }
        let membership = Membership::start(
            backend.registry.clone(),
            opts.common.membership(),
            stop.clone(),
        )
        .await?;
        let launcher: Arc<dyn Launcher> = nodes.clone();
        let gateway =
            start_gateway(&opts, listener, &membership, launcher, security, &stop).await?;
        Ok(DevCluster {
            common: opts.common.clone(),
            nodes: Nodes::Memory(nodes),
            gateway,
            membership,
            stop,
        })
    }

    async fn start_processes(opts: DevOptions, url: String) -> Result<DevCluster, DevError> {
        if url.starts_with("amqp://") {
            return Err(DevError::Cluster(
                wsring_cluster::ClusterError::InvalidUrl {
                    url,
                    reason: "RabbitMQ is a broker only; `--cluster` needs redis:// or nats://"
                        .into(),
                },
            ));
        }
        let security = dev_security(&opts)?;
        let listener = bind(&opts.host, opts.port).await?;
        let stop = CancellationToken::new();
        let c = &opts.common;
        let backend_error = |e: wsring_cluster::ClusterError| {
            DevError::Launch(crate::backends::startup_error("registry", "--cluster", &e))
        };
        let registry = crate::backends::registry(&url, &c.namespace, c.heartbeat_ttl)
            .await
            .map_err(backend_error)?;
        let membership = Membership::start(registry, c.membership(), stop.clone())
            .await
            .map_err(backend_error)?;
        let exe = match opts.exe.clone() {
            Some(exe) => exe,
            None => std::env::current_exe().map_err(DevError::Exe)?,
        };
        let procs = Arc::new(ProcessNodes::new(
            exe,
            child_args(c, &url),
            opts.host.clone(),
            Arc::clone(&membership),
        ));
        for _ in 0..opts.nodes {
            procs
                .spawn()
                .await
                .map_err(|e| DevError::Launch(e.to_string()))?;
        }
        let launcher: Arc<dyn Launcher> = procs.clone();
        let gateway =
            start_gateway(&opts, listener, &membership, launcher, security, &stop).await?;
        Ok(DevCluster {
            common: opts.common.clone(),
            nodes: Nodes::Processes(procs),
            gateway,
            membership,
            stop,
        })
    }

    /// The settings the cluster runs with.
    pub fn common(&self) -> &Common {
        &self.common
    }

    /// The in-process nodes (memory backend only).
    pub fn memory(&self) -> Option<&Arc<DevNodes>> {
        match &self.nodes {
            Nodes::Memory(n) => Some(n),
            Nodes::Processes(_) => None,
        }
    }

    /// The node processes (`--cluster` only).
    pub fn processes(&self) -> Option<&Arc<ProcessNodes>> {
        match &self.nodes {
            Nodes::Processes(p) => Some(p),
            Nodes::Memory(_) => None,
        }
    }

    /// `(id, url)` of every member, from the gateway's view.
    pub fn members(&self) -> Vec<(String, String)> {
        self.membership
            .view()
            .doc
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.url.clone()))
            .collect()
    }

    /// The gateway's `/ws` URL.
    pub fn gateway_url(&self) -> String {
        let scheme = if self.common.tls_cert.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.gateway.addr())
    }

    /// The gateway's HTTP base URL (API and dashboard).
    pub fn http_url(&self) -> String {
        let scheme = if self.common.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.gateway.addr())
    }

    /// Stops everything: in-process sessions get 1001 and nodes deregister;
    /// node processes get SIGTERM (they drain) and are reaped.
    pub async fn shutdown(&self) {
        match &self.nodes {
            Nodes::Memory(n) => {
                let handles = n.handles().await;
                futures::future::join_all(handles.values().map(|h| h.stop())).await;
            }
            Nodes::Processes(p) => p.shutdown().await,
        }
        self.stop.cancel();
    }
}

async fn start_gateway(
    opts: &DevOptions,
    listener: TcpListener,
    membership: &Arc<Membership>,
    launcher: Arc<dyn Launcher>,
    security: Arc<wsring_auth::Security>,
    stop: &CancellationToken,
) -> Result<GatewayHandle, DevError> {
    let cfg = opts.common.gateway_config("dev");
    wsring_gateway::start(
        cfg,
        listener,
        Arc::clone(membership),
        Some(launcher),
        security,
        stop.clone(),
    )
    .await
    .map_err(|e| DevError::Bind {
        addr: format!("{}:{}", opts.host, opts.port),
        reason: e.to_string(),
    })
}

/// Flags that give a `wsring node` child the cluster's settings. The
/// backend URL goes in as registry and broker explicitly, so that
/// `WSRING_REGISTRY` or `WSRING_BROKER` inherited from this process's
/// environment cannot point a child elsewhere. A playground without token
/// keys gives its children `--insecure-no-auth`: they would refuse to start
/// open otherwise.
fn child_args(c: &Common, url: &str) -> Vec<String> {
    let mut args = vec![
        "--registry".to_owned(),
        url.to_owned(),
        "--broker".to_owned(),
        url.to_owned(),
    ];
    let mut c = c.clone();
    if !c.auth_settings().jwt().has_keys() {
        c.auth.insecure_no_auth = true;
    }
    args.extend(c.to_args());
    args
}
