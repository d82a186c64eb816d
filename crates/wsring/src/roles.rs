//! `wsring node` and `wsring gateway`: one role per process, joined to a
//! cluster through Redis or NATS (and, for brokers, RabbitMQ).
//!
//! Start-up fails fast with a one-line error for a bad setting, an invalid
//! URL, an unreachable server or a node id already held by a live node. Once
//! running, backend outages are survived (reconnect with backoff) rather than
//! fatal. SIGTERM or Ctrl-C on a node drains it: deregister at once, move
//! sessions with 1012, exit 0. A node whose id another process claimed while
//! it was stalled (it was *fenced*) closes its sessions with 1012 and exits
//! non-zero with a one-line error.
//!
//! Both roles are secure by default: they refuse to start without a token
//! key (`--jwt-secret`, `--jwt-public-key`, `--jwt-jwks-file`) unless told
//! `--insecure-no-auth`, which is logged as a warning.

use anyhow::anyhow;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsring_auth::Security;
use wsring_cluster::Membership;
use wsring_node::NodeDeps;

use crate::backends::{self, startup_error};

/// The settings that choose each backend, named in start-up errors.
const REGISTRY_FLAGS: &str = "--registry or --cluster";
const BROKER_FLAGS: &str = "--broker or --cluster";
use crate::cli::{GatewayArgs, NodeArgs, ServeArgs};
use crate::settings::{SettingsError, Shared};

/// `--listen` and the registry URL (`--registry`, else `--cluster`), both required.
fn listen_and_registry(
    serve: ServeArgs,
    common: &Shared,
) -> Result<(String, String), SettingsError> {
    let listen = serve.listen.ok_or(SettingsError::Missing("listen"))?;
    check_listen(&listen)?;
    let registry = serve
        .registry
        .or_else(|| common.cluster.clone())
        .ok_or(SettingsError::MissingBackend("registry"))?;
    Ok((listen, registry))
}

/// `--listen` must be HOST:PORT. Checked before anything connects, because
/// the socket library's own complaint ("invalid socket address") does not
/// say what was expected.
fn check_listen(listen: &str) -> Result<(), SettingsError> {
    let ok = listen
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Invalid(
            "listen",
            format!(
                "{listen:?} is not HOST:PORT; use e.g. 127.0.0.1:7001, 0.0.0.0:7001 or [::1]:7001"
            ),
        ))
    }
}

/// Why a listener could not be bound, and what to do about it (`flag` is
/// the setting that chose the address).
pub(crate) fn bind_reason(e: &std::io::Error, flag: &str) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "address already in use; stop the process that holds it, or choose another with {flag}"
        ),
        ErrorKind::AddrNotAvailable => {
            format!("no such address on this machine; choose one of its own with {flag}")
        }
        ErrorKind::PermissionDenied => format!(
            "permission denied (ports below 1024 need privileges); choose another with {flag}"
        ),
        ErrorKind::InvalidInput => {
            format!("not a valid HOST:PORT address; correct {flag}")
        }
        _ => format!("{e}; check {flag}"),
    }
}

async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    wsring_http::serve::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {}", bind_reason(&e, "--listen")))
}

/// The default advertised URL for a bound address (`wss://` when the
/// listener speaks TLS): refuse wildcard addresses, which other machines
/// cannot dial.
fn default_advertise(addr: SocketAddr, tls: bool) -> anyhow::Result<String> {
    if addr.ip().is_unspecified() {
        anyhow::bail!(
            "--advertise is required when listening on {} (other processes cannot dial a wildcard address)",
            addr.ip()
        );
    }
    let scheme = if tls { "wss" } else { "ws" };
    Ok(format!("{scheme}://{addr}/ws"))
}

/// The authentication a `node` or `gateway` runs with. Without a key it
/// refuses to start unless `--insecure-no-auth` says so.
fn security(common: &Shared) -> anyhow::Result<Arc<Security>> {
    Ok(Arc::new(common.auth_settings().build(true)?))
}

/// Once serving, an explicit `--insecure-no-auth` is logged as a warning,
/// except in the children of `wsring dev`, whose parent already chose an
/// open playground. (Logged after start-up, so a start-up failure stays a
/// single line.)
fn warn_if_insecure(security: &Security, dev_child: bool) {
    if !security.insecure {
        return;
    }
    if dev_child {
        tracing::info!("authentication off: started by wsring dev");
    } else {
        tracing::warn!(
            "authentication is OFF (--insecure-no-auth): anyone who can reach this port can connect as any user"
        );
    }
}

/// Runs one node until SIGTERM/Ctrl-C, then drains it.
pub async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    if args.autobahn_echo {
        return run_echo_node(args).await;
    }
    let common = args.common;
    common.validate()?;
    let id = args.id.ok_or(SettingsError::Missing("id"))?;
    wsring_protocol::validate_node_id(&id).map_err(|e| anyhow::anyhow!("invalid --id: {e}"))?;
    let (listen, registry_url) = listen_and_registry(args.serve, &common)?;
    let broker_url = args
        .broker
        .or_else(|| common.cluster.clone())
        .ok_or(SettingsError::MissingBackend("broker"))?;
    let security = security(&common)?;
    let ns = &common.namespace;

    let registry = backends::registry(&registry_url, ns, common.heartbeat_ttl)
        .await
        .map_err(|e| anyhow!(startup_error("registry", REGISTRY_FLAGS, &e)))?;
    let (broker, inbox) = backends::broker(&broker_url, ns, &id)
        .await
        .map_err(|e| anyhow!(startup_error("broker", BROKER_FLAGS, &e)))?;
    let streams = if common.durable {
        Some(
            backends::streams(&registry_url, ns, common.retention())
                .await
                .map_err(|e| anyhow!(startup_error("stream store", REGISTRY_FLAGS, &e)))?,
        )
    } else {
        None
    };
    let hooked =
        !common.node.webhook_url.is_empty() || !common.auth.pusher.pusher_webhook_url.is_empty();
    let hook_queue = if common.durable && hooked {
        Some(
            backends::hook_queue(&registry_url, ns)
                .await
                .map_err(|e| anyhow!(startup_error("webhook queue store", REGISTRY_FLAGS, &e)))?,
        )
    } else {
        None
    };
    let server_rooms = backends::server_rooms(&registry_url, ns)
        .await
        .map_err(|e| anyhow!(startup_error("server-side room store", REGISTRY_FLAGS, &e)))?;
    let listener = bind(&listen).await?;
    let mut cfg = common.node_config(&id);
    cfg.advertise = match args.advertise {
        Some(url) => Some(url),
        None => Some(default_advertise(
            listener.local_addr()?,
            common.tls_cert.is_some(),
        )?),
    };
    let kill = CancellationToken::new();
    let membership = Membership::start(registry, common.membership(), kill.clone())
        .await
        .map_err(|e| anyhow!(startup_error("registry", REGISTRY_FLAGS, &e)))?;
    let handle = wsring_node::start(
        cfg,
        listener,
        NodeDeps {
            membership,
            broker,
            inbox,
            streams,
            server_rooms,
            hook_queue,
            security: Arc::clone(&security),
            kill,
        },
    )
    .await?;
    println!("wsring node {id} serving {}", handle.url());
    warn_if_insecure(&security, args.exit_with_parent);
    let parent = async {
        if args.exit_with_parent {
            parent_gone().await;
            tracing::warn!("parent process exited; draining");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = crate::shutdown_signal() => {}
        _ = parent => {}
        fenced = handle.fenced() => {
            // The node stops itself (sessions closed with 1012); wait for it
            // so the close frames go out, then fail.
            handle.stopped().await;
            anyhow::bail!("{fenced}");
        }
    }
    handle.drain().await;
    Ok(())
}

/// `wsring node --autobahn-echo`: one node alone in echo mode
/// ([`wsring_node::echo`]) until SIGTERM/Ctrl-C. Settings that only make
/// sense in a cluster, or with authentication, are refused rather than
/// ignored.
async fn run_echo_node(args: NodeArgs) -> anyhow::Result<()> {
    let common = args.common;
    let conflicts = [
        (common.cluster.is_some(), "--cluster"),
        (args.serve.registry.is_some(), "--registry"),
        (args.broker.is_some(), "--broker"),
        (common.durable, "--durable"),
        (
            common.auth_settings().jwt().has_keys(),
            "token keys (--jwt-…)",
        ),
    ];
    if let Some((_, flag)) = conflicts.iter().find(|(set, _)| *set) {
        anyhow::bail!(
            "--autobahn-echo runs one node alone without a cluster or authentication; remove {flag} \
             (or its WSRING_* variable or config key)"
        );
    }
    let id = args.id.unwrap_or_else(|| "autobahn".to_owned());
    wsring_protocol::validate_node_id(&id).map_err(|e| anyhow::anyhow!("invalid --id: {e}"))?;
    let listen = args.serve.listen.ok_or(SettingsError::Missing("listen"))?;
    check_listen(&listen)?;
    let mut cfg = common.node_config(&id).into_echo();
    // The settings as echo mode changes them must still be valid.
    let mut checked = common.clone();
    checked.shared.max_message_bytes = cfg.max_message_bytes;
    checked.node.session_queue_bytes = cfg.session_queue_bytes;
    checked.validate()?;
    let listener = bind(&listen).await?;
    cfg.advertise = args.advertise;
    let kill = CancellationToken::new();
    let handle = wsring_node::start_echo(cfg, listener, kill).await?;
    println!("wsring node {id} serving {}", handle.url());
    crate::shutdown_signal().await;
    handle.stop().await;
    Ok(())
}

/// Runs one gateway until SIGTERM/Ctrl-C.
pub async fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let common = args.common;
    common.validate()?;
    let (listen, registry_url) = listen_and_registry(args.serve, &common)?;
    let security = security(&common)?;
    let stop = CancellationToken::new();
    let registry = backends::registry(&registry_url, &common.namespace, common.heartbeat_ttl)
        .await
        .map_err(|e| anyhow!(startup_error("registry", REGISTRY_FLAGS, &e)))?;
    let membership = Membership::start(registry, common.membership(), stop.clone())
        .await
        .map_err(|e| anyhow!(startup_error("registry", REGISTRY_FLAGS, &e)))?;
    let listener = bind(&listen).await?;
    let cfg = common.gateway_config("gateway");
    let gw = wsring_gateway::start(
        cfg,
        listener,
        membership,
        None,
        Arc::clone(&security),
        stop.clone(),
    )
    .await?;
    println!("wsring gateway listening on {}", gw.addr());
    warn_if_insecure(&security, false);
    crate::shutdown_signal().await;
    stop.cancel();
    Ok(())
}

/// Resolves when this process is re-parented (its launcher died).
async fn parent_gone() {
    let parent = nix::unistd::getppid();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if nix::unistd::getppid() != parent {
            return;
        }
    }
}
