//! In-process implementations of Spin's `spin:key-value/key-value@3.0.0` and
//! `spin:variables/variables@3.0.0` imports (the interfaces spin-sdk 7 binds to); the
//! `spin:sqlite` and `spin:redis` imports are in `spin_stores`.
//!
//! - Key-value: one in-memory store shared by every instance, immediately consistent (unlike
//!   Fermyon Cloud's store, see docs/spin.md). Only stores listed in the component's
//!   `key_value_stores` may be opened (`access-denied` otherwise, as in Spin); the only store
//!   that exists is `default` (`no-such-store` otherwise), as with Spin's default runtime config.
//! - Variables: the component variables from the manifest, templates expanded; a name the
//!   component did not declare is `undefined`, a malformed one `invalid-name`, as in Spin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};

use crate::manifest::{check_variable_name, App};
use crate::Ctx;

wasmtime::component::bindgen!({
    path: "wit",
    world: "spin-test:host/spin-imports",
    imports: { default: trappable },
    with: {
        "spin:key-value/key-value.store": KvStore,
        "spin:sqlite/sqlite.connection": crate::spin_stores::SqliteConnection,
        "spin:redis/redis.connection": crate::spin_stores::RedisConnection,
    },
});

use spin::key_value::key_value;
use spin::variables::variables;

/// The shared state behind the Spin imports.
pub struct SpinState {
    pub app: Arc<App>,
    pub kv: KvMap,
    pub stats: Arc<Stats>,
    pub sqlite: Arc<crate::spin_stores::SqliteDatabase>,
}

/// Counters the host prints on exit (and the tests read from the log).
#[derive(Default)]
pub struct Stats {
    pub kv_gets: std::sync::atomic::AtomicU64,
    pub variable_gets: std::sync::atomic::AtomicU64,
    pub sqlite_statements: std::sync::atomic::AtomicU64,
    pub redis_commands: std::sync::atomic::AtomicU64,
}

/// An open key-value store (the guest's `store` resource).
pub struct KvStore {
    #[allow(dead_code)]
    label: String,
}

/// Marker for `add_to_linker`: the imports see the whole store data.
pub struct SpinData;

impl HasData for SpinData {
    type Data<'a> = &'a mut Ctx;
}

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<Ctx>) -> wasmtime::Result<()> {
    key_value::add_to_linker::<Ctx, SpinData>(linker, |ctx| ctx)?;
    variables::add_to_linker::<Ctx, SpinData>(linker, |ctx| ctx)?;
    spin::sqlite::sqlite::add_to_linker::<Ctx, SpinData>(linker, |ctx| ctx)?;
    spin::redis::redis::add_to_linker::<Ctx, SpinData>(linker, |ctx| ctx)?;
    Ok(())
}

/// The in-memory key-value store shared by every instance.
pub type KvMap = Arc<Mutex<HashMap<String, Vec<u8>>>>;

fn shared<T: 'static>(accessor: &Accessor<T, SpinData>) -> (Arc<App>, KvMap, Arc<Stats>) {
    accessor.with(|mut access| {
        let spin = &access.get().spin;
        (spin.app.clone(), spin.kv.clone(), spin.stats.clone())
    })
}

impl key_value::Host for &mut Ctx {}

impl key_value::HostStore for &mut Ctx {
    fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl<T: Send> key_value::HostStoreWithStore<T> for SpinData {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvStore>, key_value::Error>> {
        let (app, _, _) = shared(accessor);
        if !app.key_value_stores.contains(&label) {
            return Ok(Err(key_value::Error::AccessDenied));
        }
        if label != "default" {
            return Ok(Err(key_value::Error::NoSuchStore));
        }
        let resource = accessor.with(|mut access| access.get().table.push(KvStore { label }))?;
        Ok(Ok(resource))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        _store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let (_, kv, stats) = shared(accessor);
        stats.kv_gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let value = kv.lock().unwrap().get(&key).cloned();
        Ok(Ok(value))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        _store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let (_, kv, _) = shared(accessor);
        kv.lock().unwrap().insert(key, value);
        Ok(Ok(()))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        _store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let (_, kv, _) = shared(accessor);
        kv.lock().unwrap().remove(&key);
        Ok(Ok(()))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        _store: Resource<KvStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let (_, kv, _) = shared(accessor);
        let exists = kv.lock().unwrap().contains_key(&key);
        Ok(Ok(exists))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        _store: Resource<KvStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), key_value::Error>>)> {
        let (_, kv, _) = shared(accessor);
        let keys: Vec<String> = kv.lock().unwrap().keys().cloned().collect();
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, keys)?;
            let result = FutureReader::new(&mut access, async { wasmtime::error::Ok(Ok(())) })?;
            Ok((stream, result))
        })
    }
}

impl variables::Host for &mut Ctx {}

impl<T: Send> variables::HostWithStore<T> for SpinData {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        let (app, _, stats) = shared(accessor);
        stats.variable_gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if check_variable_name(&name).is_err() {
            return Ok(Err(variables::Error::InvalidName(name)));
        }
        Ok(match app.component_variables.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(variables::Error::Undefined(format!("no variable for {:?}.{name:?}", app.component_id))),
        })
    }
}
