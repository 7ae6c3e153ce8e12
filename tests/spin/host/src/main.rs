//! `spin-test-host`: serves a Spin HTTP component (wasi:http@0.3.0, as built by spin-sdk 7)
//! over real HTTP with wasmtime, the way `spin up` would, for the end-to-end tests and the
//! benchmark. The Spin CLI itself is not installable from the package registries (its
//! binaries come from GitHub), so this host provides the same imports from crates.io parts:
//!
//! - `wasi:http@0.3.0` (handler export, outbound `client`) from `wasmtime-wasi-http`;
//!   outbound requests are checked against the component's `allowed_outbound_hosts` and refused
//!   with `HTTP-request-denied` otherwise, as Spin does;
//! - WASI 0.3 clocks, random, cli and the WASI 0.2 interfaces Rust's `std` uses, from
//!   `wasmtime-wasi`;
//! - `spin:key-value@3.0.0` and `spin:variables@3.0.0` in memory (see `spin_imports`);
//! - `spin:sqlite@3.1.0` on a real SQLite file in a temporary directory and `spin:redis@3.0.0`
//!   against a real redis-server (see `spin_stores`).
//!
//! Usage (flags named after `spin up`'s):
//!   spin-test-host [--from spin.toml] [--listen 127.0.0.1:3000] [--variable name=value|name=@file]...
//!                  [--key-value key=value]... [--allow-outbound ORIGIN]... [--instance-reuse N]
//!                  [--cache-dir DIR]
//!
//! `--allow-outbound` appends to the manifest's `allowed_outbound_hosts` (tests use it for the
//! mock upstream's loopback origin). `--instance-reuse N` lets one instance serve up to N
//! requests (default 1: a fresh instance per request, Spin's documented model). `--cache-dir`
//! keeps the compiled native code between runs (Spin does the same with wasmtime's cache).

// This is a host, not the core: reading the environment and the clock is its job (the
// workspace's clippy.toml forbids both for the gateway crates).
#![allow(clippy::disallowed_methods)]

mod manifest;
mod spin_imports;
mod spin_stores;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use wasmtime::component::{Component, GuestTaskId, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreContextMut};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use manifest::App;
use spin_imports::{KvMap, SpinState, Stats};

/// Per-instance store data.
pub struct Ctx {
    pub table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundPolicy,
    pub spin: SpinState,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Ctx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Refuses outbound requests to origins not in `allowed_outbound_hosts`, then sends with
/// wasmtime-wasi-http's default client.
struct OutboundPolicy {
    app: Arc<App>,
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "http" { 80 } else { 443 });
        if !self.app.outbound_allowed(&scheme, &host, port) {
            eprintln!(
                "[spin-test-host] outbound request to {scheme}://{host}:{port} denied (not in allowed_outbound_hosts)"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>))
        })
    }
}

struct Options {
    manifest: PathBuf,
    listen: SocketAddr,
    variables: HashMap<String, String>,
    key_values: Vec<(String, String)>,
    allow_outbound: Vec<String>,
    instance_reuse: usize,
    cache_dir: Option<PathBuf>,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        manifest: PathBuf::from("spin.toml"),
        listen: "127.0.0.1:3000".parse().unwrap(),
        variables: HashMap::new(),
        key_values: Vec::new(),
        allow_outbound: Vec::new(),
        instance_reuse: 1,
        cache_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--from" | "-f" => options.manifest = PathBuf::from(value()?),
            "--listen" => options.listen = value()?.parse().context("--listen")?,
            "--variable" => {
                let v = value()?;
                let (name, val) = v.split_once('=').ok_or_else(|| anyhow!("--variable {v}: expected name=value"))?;
                let val = match val.strip_prefix('@') {
                    Some(path) => {
                        std::fs::read_to_string(path).with_context(|| format!("--variable {name}=@{path}"))?
                    }
                    None => val.to_string(),
                };
                options.variables.insert(name.to_string(), val);
            }
            "--key-value" => {
                let v = value()?;
                let (k, val) = v.split_once('=').ok_or_else(|| anyhow!("--key-value {v}: expected key=value"))?;
                options.key_values.push((k.to_string(), val.to_string()));
            }
            "--allow-outbound" => options.allow_outbound.push(value()?),
            "--cache-dir" => options.cache_dir = Some(PathBuf::from(value()?)),
            "--instance-reuse" => options.instance_reuse = value()?.parse().context("--instance-reuse")?,
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if options.instance_reuse == 0 {
        bail!("--instance-reuse must be at least 1");
    }
    Ok(options)
}

/// State shared by every worker (instance).
struct HostState {
    engine: Engine,
    pre: ProxyPre<Ctx>,
    app: Arc<App>,
    kv: KvMap,
    stats: Arc<Stats>,
    sqlite: Arc<spin_stores::SqliteDatabase>,
    instance_reuse: usize,
    instances: AtomicU64,
}

impl HandlerState for HostState {
    type StoreData = Ctx;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<Ctx, Expiration, Worker>> {
        self.instances.fetch_add(1, Ordering::Relaxed);
        let ctx = Ctx {
            table: ResourceTable::new(),
            // stdout/stderr of the component go to the host's (Spin writes them to .spin/logs).
            wasi: WasiCtxBuilder::new().inherit_stdout().inherit_stderr().build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundPolicy { app: self.app.clone() },
            spin: SpinState {
                app: self.app.clone(),
                kv: self.kv.clone(),
                stats: self.stats.clone(),
                sqlite: self.sqlite.clone(),
            },
        };
        let mut store = Store::new(&self.engine, ctx);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration { sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)) },
            state: Worker { reuse: self.instance_reuse },
        })
    }
}

/// Drops an idle instance after a short idle period; requests themselves are not timed out
/// here (the gateway enforces its own upstream timeouts).
struct Expiration {
    sleep: Pin<Box<tokio::time::Sleep>>,
}

const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

impl WorkerExpiration for Expiration {
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, status: WorkerStatus, start: Instant) -> Poll<()> {
        match status {
            WorkerStatus::Idle => {
                let deadline = tokio::time::Instant::from_std(start + IDLE_TIMEOUT);
                if self.sleep.deadline() != deadline {
                    self.sleep.as_mut().reset(deadline);
                }
                self.sleep.as_mut().poll(cx)
            }
            WorkerStatus::Requests | WorkerStatus::PostReturn => Poll::Pending,
        }
    }
}

struct Worker {
    reuse: usize,
}

impl WorkerState for Worker {
    type StoreData = Ctx;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse {
            ShouldAccept::Never
        } else if concurrent >= 16 {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, Ctx>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<Ctx>, result: Result<(), wasmtime::Error>) {
        if let Err(e) = result {
            eprintln!("[spin-test-host] instance failed: {e:?}");
        }
        drop(store);
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, handler: ProxyHandler<HostState>) {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let request = request.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
            match handler.handle((), request).await {
                Ok(response) => Ok::<_, Infallible>(response),
                Err(e) => {
                    eprintln!("[spin-test-host] request failed: {e:?}");
                    let body = Full::new(bytes::Bytes::from_static(b"component trapped or failed\n"))
                        .map_err(|never: Infallible| match never {})
                        .boxed_unsync();
                    Ok(http::Response::builder().status(500).body(body).unwrap())
                }
            }
        }
    });
    if let Err(e) = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await {
        // Clients that go away mid-stream end up here; that is expected in the tests.
        if !e.is_incomplete_message() {
            eprintln!("[spin-test-host] connection: {e}");
        }
    }
}

/// Compiles the component, or with `--cache-dir` loads the native code compiled by an earlier
/// run of this same host binary for these exact bytes (as `spin up` does with wasmtime's cache).
fn load_component(engine: &Engine, source: &Path, cache_dir: Option<&Path>) -> Result<(Component, &'static str)> {
    let bytes = std::fs::read(source)
        .with_context(|| format!("reading component {} (run scripts/build-spin)", source.display()))?;
    let compile =
        |bytes: &[u8]| Component::new(engine, bytes).map_err(|e| anyhow!("compiling {}: {e:?}", source.display()));
    let Some(dir) = cache_dir else {
        return Ok((compile(&bytes)?, "compiled"));
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let path = dir.join(format!("{:016x}.cwasm", hasher.finish()));
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of this host for these bytes.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok((component, "loaded from the compilation cache"));
        }
    }
    let component = compile(&bytes)?;
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize().map_err(|e| anyhow!("serializing: {e:?}"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, &path)?;
    Ok((component, "compiled (and cached)"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_args()?;
    let started = Instant::now();
    let app = Arc::new(App::load(&options.manifest, &options.variables, &options.allow_outbound)?);

    let mut config = Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config)?;
    let (component, how) = load_component(&engine, &app.source, options.cache_dir.as_deref())?;
    let compiled = started.elapsed();

    let mut linker: Linker<Ctx> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?; // std's own imports (WASI 0.2)
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    spin_imports::add_to_linker(&mut linker)?;
    let pre = ProxyPre::P3(wasmtime_wasi_http::p3::bindings::ServicePre::new(linker.instantiate_pre(&component)?)?);

    let kv = Arc::new(Mutex::new(
        options.key_values.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect::<HashMap<_, _>>(),
    ));
    let stats = Arc::new(Stats::default());
    // The `default` SQLite database: a file per run, removed on exit (`spin up` keeps it in .spin/).
    let sqlite_dir = std::env::temp_dir().join(format!("spin-test-host-{}", std::process::id()));
    std::fs::create_dir_all(&sqlite_dir).with_context(|| format!("creating {}", sqlite_dir.display()))?;
    let sqlite = Arc::new(spin_stores::SqliteDatabase::new(sqlite_dir.join("sqlite_db.db")));
    let handler = ProxyHandler::new(HostState {
        engine: engine.clone(),
        pre,
        app: app.clone(),
        kv,
        stats: stats.clone(),
        sqlite,
        instance_reuse: options.instance_reuse,
        instances: AtomicU64::new(0),
    });

    let listener =
        tokio::net::TcpListener::bind(options.listen).await.with_context(|| format!("binding {}", options.listen))?;
    eprintln!(
        "[spin-test-host] component {} ({}) {how} in {} ms; serving http://{}/ (route /...)",
        app.component_id,
        app.source.display(),
        compiled.as_millis(),
        listener.local_addr()?
    );
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                stream.set_nodelay(true)?; // SSE chunks are small: no Nagle delay
                tokio::spawn(serve_connection(stream, handler.clone()));
            }
            _ = &mut shutdown => break,
            _ = term.recv() => break,
        }
    }
    eprintln!(
        "[spin-test-host] exiting: {} instances, {} key-value gets, {} variable gets, {} sqlite statements, {} redis commands",
        handler.state().instances.load(Ordering::Relaxed),
        stats.kv_gets.load(Ordering::Relaxed),
        stats.variable_gets.load(Ordering::Relaxed),
        stats.sqlite_statements.load(Ordering::Relaxed),
        stats.redis_commands.load(Ordering::Relaxed),
    );
    let _ = std::fs::remove_dir_all(&sqlite_dir);
    Ok(())
}
