//! Server-side apply and field ownership: merges applied configurations and records who owns which
//! field in `metadata.managedFields`, following sigs.k8s.io/structured-merge-diff like the API server.
// `ApiResult` is the simulator-wide error type; its size is a shared design choice, not ours to box.
#![allow(clippy::result_large_err)]
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::status::{ApiError, ApiResult, FieldCause};
use super::structure::{ListType, Structure};

/// `metadata` fields the server sets; no manager ever owns them (the API server strips them too).
const SERVER_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// Server-side apply of `applied` (the request body, already parsed; never contains status when the
/// caller strips it) by `manager`. `live` is the current object (None = create). Returns the new object
/// with `metadata.managedFields` updated. `now` is an RFC3339 timestamp for the entry's `time`.
///
/// Errors: 400 when the body carries managedFields or a keyed list item lacks its key; 409 "Conflict"
/// (one `FieldManagerConflict` cause per field) when another manager owns a field whose value this
/// configuration changes and `force` is false. With `force`, those fields move to `manager`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    structure: &dyn Structure,
    now: &str,
    subresource: Option<&str>,
) -> ApiResult<Value> {
    let config = applied_config(applied)?;
    let root = At::root(structure);
    check_keys(&config, &root).map_err(|reason| typed_patch_error(&config, &reason))?;

    let live_object = live.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let mut entries = live.map(read_entries).unwrap_or_default();
    let previous = take_entry(&mut entries, manager, APPLY, subresource);
    let mut applied_set = field_set(&config, &root);
    applied_set.difference(&ignored_fields());

    let mut merged = live_object.clone();
    merge(&mut merged, &config, &root);
    let mut owned_by_anyone = applied_set.clone();
    entries.iter().for_each(|e| owned_by_anyone.union(&e.fields));
    if let Some(previous) = &previous {
        prune(&mut merged, &previous.fields, Some(&owned_by_anyone), &root);
    }

    let diff = diff_objects(&live_object, &merged, structure);
    take_changed_fields(&mut entries, &diff, force)?;

    // Like the API server, a no-op apply leaves the entry's timestamp alone so re-applies are stable.
    let unchanged = live.is_some() && merged == live_object;
    let time = match previous {
        Some(p) if unchanged && p.fields == applied_set => p.time,
        _ => Some(now.to_string()),
    };
    if !applied_set.is_empty() {
        let api_version = api_version_of(&merged);
        entries.push(Entry::new(manager, APPLY, api_version, time, subresource, applied_set));
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Ownership for a non-apply write (create, update, merge/json/strategic patch): every field whose value
/// differs between `old` (None = create: every field) and `new` becomes owned by `manager` with
/// operation "Update" and is removed from other managers' sets; writes the result into
/// new.metadata.managedFields (taking the existing entries from old, unless the write itself set
/// managedFields, which the API server honours). Entries whose field set becomes empty are dropped.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    structure: &dyn Structure,
    now: &str,
    subresource: Option<&str>,
) {
    let mut entries = requested_entries(new, subresource)
        .or_else(|| old.map(read_entries))
        .unwrap_or_default();
    let old_object = old.map(without_managed_fields).unwrap_or_else(|| json!({}));
    let diff = diff_objects(&old_object, &without_managed_fields(new), structure);
    let changed = diff.changed();
    for entry in &mut entries {
        entry.fields.difference(&changed);
        entry.fields.difference(&diff.removed);
    }
    let mut own = take_entry(&mut entries, manager, UPDATE, subresource)
        .unwrap_or_else(|| Entry::new(manager, UPDATE, String::new(), None, subresource, FieldSet::default()));
    // The entry's time says when this manager last changed something, so untouched entries keep theirs.
    if !changed.is_empty() {
        own.fields.union(&changed);
        own.time = Some(now.to_string());
        own.api_version = api_version_of(new);
    }
    entries.push(own);
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, entries);
}

// ---------------------------------------------------------------------------------------------------
// Field paths and sets
// ---------------------------------------------------------------------------------------------------

/// One step of a field path. The derived order (fields, then keys, then values) is the order
/// structured-merge-diff serializes a set in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PathElement {
    /// A map field: `f:<name>`.
    Field(String),
    /// An item of a ListType::Map list: key field names with compact JSON values, sorted by name.
    Key(Vec<(String, String)>),
    /// An item of a ListType::Set list: its compact JSON value.
    Value(String),
}

impl PathElement {
    /// The FieldsV1 object key.
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                    .collect();
                format!("k:{{{}}}", parts.join(","))
            }
            PathElement::Value(value) => format!("v:{value}"),
        }
    }

    fn decode(key: &str) -> Option<PathElement> {
        let (prefix, rest) = key.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let Value::Object(fields) = serde_json::from_str(rest).ok()? else {
                    return None;
                };
                let mut fields: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                fields.sort();
                Some(PathElement::Key(fields))
            }
            "v:" => serde_json::from_str::<Value>(rest)
                .ok()
                .map(|v| PathElement::Value(v.to_string())),
            _ => None,
        }
    }
}

/// `.spec.containers[name="app"].image`, as the API server prints paths in conflicts.
fn path_string(path: &[PathElement]) -> String {
    path.iter()
        .map(|pe| match pe {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(value) => format!("[={value}]"),
        })
        .collect()
}

/// A set of field paths stored as a tree: `member` says the path ending at this node is itself in
/// the set (a leaf, or a list item owned as a whole: `.` in FieldsV1).
#[derive(Debug, Clone, Default, PartialEq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((pe, rest)) => self.children.entry(pe.clone()).or_default().insert(rest),
        }
    }

    fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union(child);
        }
    }

    /// Removes the paths of `other`; a removed member keeps its children (sets hold paths, not subtrees).
    fn difference(&mut self, other: &FieldSet) {
        self.member &= !other.member;
        for (pe, other_child) in &other.children {
            if let Some(child) = self.children.get_mut(pe) {
                child.difference(other_child);
                if child.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    fn intersection(&self, other: &FieldSet) -> FieldSet {
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| Some((pe.clone(), child.intersection(other.children.get(pe)?))))
            .filter(|(_, child)| !child.is_empty())
            .collect();
        FieldSet {
            member: self.member && other.member,
            children,
        }
    }

    /// Every path in the set, parents before children, in serialization order.
    fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// FieldsV1 JSON: a leaf is `{}`; a member with children also carries `".": {}`.
    fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        if self.member && !self.children.is_empty() {
            out.insert(".".into(), json!({}));
        }
        for (pe, child) in &self.children {
            out.insert(pe.encode(), child.to_fields_v1());
        }
        Value::Object(out)
    }

    /// Parses FieldsV1; unknown path elements (such as `i:` indexes we never write) are skipped.
    fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        for (key, child) in value.as_object().into_iter().flatten() {
            if key == "." {
                set.member = true;
            } else if let Some(pe) = PathElement::decode(key) {
                let mut child = FieldSet::from_fields_v1(child);
                child.member |= child.children.is_empty();
                set.children.insert(pe, child);
            }
        }
        set
    }
}

/// Paths nobody may own: type identity and server-managed metadata.
fn ignored_fields() -> FieldSet {
    let field = |name: &str| PathElement::Field(name.to_string());
    let mut set = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        set.insert(&[field(top)]);
    }
    for name in SERVER_METADATA {
        set.insert(&[field("metadata"), field(name)]);
    }
    set
}

/// Fields apply must never delete, even when nobody owns anything beneath them.
fn is_protected(path: &[PathElement]) -> bool {
    let names: Vec<&str> = path
        .iter()
        .map_while(|pe| match pe {
            PathElement::Field(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.len() == path.len()
        && match names.as_slice() {
            ["apiVersion" | "kind" | "metadata"] => true,
            ["metadata", name] => SERVER_METADATA.contains(name),
            _ => false,
        }
}

// ---------------------------------------------------------------------------------------------------
// Walking objects with their list types
// ---------------------------------------------------------------------------------------------------

/// A position in an object: the map-key chain the Structure is asked about, and the field path.
#[derive(Clone)]
struct At<'s> {
    structure: &'s dyn Structure,
    names: Vec<String>,
    path: Vec<PathElement>,
}

impl<'s> At<'s> {
    fn root(structure: &'s dyn Structure) -> Self {
        At {
            structure,
            names: Vec::new(),
            path: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> Self {
        let mut next = self.clone();
        next.names.push(name.to_string());
        next.path.push(PathElement::Field(name.to_string()));
        next
    }

    /// List items add a path element but no Structure segment.
    fn item(&self, pe: &PathElement) -> Self {
        let mut next = self.clone();
        next.path.push(pe.clone());
        next
    }

    fn list_type(&self) -> ListType {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        self.structure.list_type(&names)
    }
}

/// How a value takes part in ownership.
enum Shape<'a> {
    /// Owned as a whole: scalars, null, atomic lists (and keyed lists we cannot index).
    Leaf,
    Map(&'a Map<String, Value>),
    /// A Map or Set list: one path element per item.
    List(Vec<(PathElement, &'a Value)>),
}

fn shape<'a>(value: &'a Value, at: &At) -> Shape<'a> {
    match value {
        Value::Object(map) => Shape::Map(map),
        Value::Array(items) => match at.list_type() {
            ListType::Atomic => Shape::Leaf,
            // Stored objects may hold duplicate or keyless items (written by a plain update); the
            // API server then treats the list as one value, and so do we.
            list_type => match item_elements(items, &list_type) {
                Ok(pes) => Shape::List(pes.into_iter().zip(items).collect()),
                Err(_) => Shape::Leaf,
            },
        },
        _ => Shape::Leaf,
    }
}

/// One path element per item of a Map or Set list; errors name the offending item.
fn item_elements(items: &[Value], list_type: &ListType) -> Result<Vec<PathElement>, String> {
    let ListType::Map(keys) = list_type else {
        return Ok(items.iter().map(|item| PathElement::Value(item.to_string())).collect());
    };
    let mut pes: Vec<PathElement> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let pe = item_key(item, keys).map_err(|e| format!("element {index}: {e}"))?;
        if pes.contains(&pe) {
            return Err(format!("duplicate entries for key {}", path_string(&[pe])));
        }
        pes.push(pe);
    }
    Ok(pes)
}

fn item_key(item: &Value, keys: &[String]) -> Result<PathElement, String> {
    let Value::Object(item) = item else {
        return Err("associative list with keys has an element that is not a map".into());
    };
    let mut fields = Vec::with_capacity(keys.len());
    for key in keys {
        let value = item.get(key).filter(|v| !v.is_null()).cloned().or_else(|| key_default(key)).ok_or_else(|| {
            format!("associative list with keys has an element that omits key field {key:?} (and doesn't have default value)")
        })?;
        fields.push((key.clone(), value.to_string()));
    }
    fields.sort();
    Ok(PathElement::Key(fields))
}

/// Key fields with an OpenAPI default: ports may omit `protocol`, which the API server keys as TCP.
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| json!("TCP"))
}

/// The fields a value sets (structured-merge-diff's `ToFieldSet`): leaves, empty maps, and list items.
fn collect(value: &Value, at: &At, is_item: bool, out: &mut FieldSet) {
    if is_item {
        out.insert(&at.path);
    }
    match shape(value, at) {
        Shape::Map(map) if !map.is_empty() => {
            for (name, child) in map {
                collect(child, &at.field(name), false, out);
            }
        }
        Shape::List(items) => {
            for (pe, item) in items {
                collect(item, &at.item(&pe), true, out);
            }
        }
        // An empty map is owned as a whole, like a scalar; the root is never a member.
        Shape::Map(_) | Shape::Leaf => {
            if !is_item && !at.path.is_empty() {
                out.insert(&at.path);
            }
        }
    }
}

fn field_set(value: &Value, root: &At) -> FieldSet {
    let mut set = FieldSet::default();
    collect(value, root, false, &mut set);
    set
}

// ---------------------------------------------------------------------------------------------------
// Comparing objects
// ---------------------------------------------------------------------------------------------------

/// What changed between two objects, as sets of owned-able paths.
#[derive(Default)]
struct Diff {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Diff {
    /// Fields whose value the new object sets differently: the ones a writer takes over.
    fn changed(&self) -> FieldSet {
        let mut changed = self.added.clone();
        changed.union(&self.modified);
        changed
    }
}

fn diff_objects(old: &Value, new: &Value, structure: &dyn Structure) -> Diff {
    let mut diff = Diff::default();
    diff_values(Some(old), Some(new), &At::root(structure), false, &mut diff);
    let ignored = ignored_fields();
    for set in [&mut diff.added, &mut diff.modified, &mut diff.removed] {
        set.difference(&ignored);
    }
    diff
}

fn diff_values(old: Option<&Value>, new: Option<&Value>, at: &At, is_item: bool, diff: &mut Diff) {
    let (old, new) = match (old, new) {
        (None, None) => return,
        (Some(old), None) => return collect(old, at, is_item, &mut diff.removed),
        (None, Some(new)) => return collect(new, at, is_item, &mut diff.added),
        (Some(old), Some(new)) => (old, new),
    };
    match (shape(old, at), shape(new, at)) {
        (Shape::Map(old_map), Shape::Map(new_map)) => {
            let new_only = new_map.keys().filter(|k| !old_map.contains_key(*k));
            for name in old_map.keys().chain(new_only) {
                diff_values(old_map.get(name), new_map.get(name), &at.field(name), false, diff);
            }
        }
        (Shape::List(old_items), Shape::List(new_items)) => diff_items(&old_items, &new_items, at, diff),
        (Shape::Leaf, Shape::Leaf) => {
            if old != new {
                diff.modified.insert(&at.path);
            }
        }
        // The value changed kind (say a scalar became a map): everything old went, everything new came.
        _ => {
            collect(old, at, is_item, &mut diff.removed);
            collect(new, at, is_item, &mut diff.added);
        }
    }
}

fn diff_items(old: &[(PathElement, &Value)], new: &[(PathElement, &Value)], at: &At, diff: &mut Diff) {
    let new_only = new.iter().filter(|(pe, _)| find(old, pe).is_none());
    for (pe, _) in old.iter().chain(new_only) {
        diff_values(find(old, pe), find(new, pe), &at.item(pe), true, diff);
    }
}

fn find<'a>(items: &[(PathElement, &'a Value)], pe: &PathElement) -> Option<&'a Value> {
    items.iter().find(|(p, _)| p == pe).map(|(_, v)| *v)
}

// ---------------------------------------------------------------------------------------------------
// Merging and pruning
// ---------------------------------------------------------------------------------------------------

/// Merges the applied configuration into the live object: maps recursively, keyed lists item by
/// item (new items appended), sets by union, everything else replaced.
fn merge(live: &mut Value, config: &Value, at: &At) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (name, value) in config {
                match live.get_mut(name) {
                    Some(existing) => merge(existing, value, &at.field(name)),
                    None => {
                        live.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(config)) => merge_list(live, config, at),
        (live, config) => *live = config.clone(),
    }
}

fn merge_list(live: &mut Vec<Value>, config: &[Value], at: &At) {
    let list_type = at.list_type();
    let indexed = match list_type {
        ListType::Atomic => None,
        _ => item_elements(live, &list_type)
            .ok()
            .zip(item_elements(config, &list_type).ok()),
    };
    // Atomic lists are replaced; so is a live list we cannot index (it was written as a whole).
    let Some((live_pes, config_pes)) = indexed else {
        *live = config.to_vec();
        return;
    };
    for (pe, value) in config_pes.iter().zip(config) {
        match live_pes.iter().position(|p| p == pe) {
            Some(index) => merge(&mut live[index], value, &at.item(pe)),
            None => live.push(value.clone()),
        }
    }
}

/// Deletes what the applier owned last time (`last`) and no manager owns any more (`keep`, which
/// includes the applier's new configuration). A map field goes when nobody owns anything at or
/// below it; a list item goes when nobody owns the item itself.
fn prune(value: &mut Value, last: &FieldSet, keep: Option<&FieldSet>, at: &At) {
    match value {
        Value::Object(map) => prune_fields(map, last, keep, at),
        Value::Array(items) => prune_items(items, last, keep, at),
        _ => {}
    }
}

fn prune_fields(map: &mut Map<String, Value>, last: &FieldSet, keep: Option<&FieldSet>, at: &At) {
    for (pe, last_child) in &last.children {
        let PathElement::Field(name) = pe else {
            continue;
        };
        let child_at = at.field(name);
        let keep_child = keep.and_then(|k| k.children.get(pe));
        match keep_child {
            None if !is_protected(&child_at.path) => {
                map.shift_remove(name);
            }
            Some(kept) if kept.member => {}
            _ => {
                if let Some(child) = map.get_mut(name) {
                    prune(child, last_child, keep_child, &child_at);
                }
            }
        }
    }
}

fn prune_items(items: &mut Vec<Value>, last: &FieldSet, keep: Option<&FieldSet>, at: &At) {
    let list_type = at.list_type();
    if list_type == ListType::Atomic {
        return;
    }
    let Ok(pes) = item_elements(items, &list_type) else {
        return;
    };
    let mut retained = Vec::with_capacity(items.len());
    for (pe, item) in pes.iter().zip(items.iter_mut()) {
        let Some(last_child) = last.children.get(pe) else {
            retained.push(true);
            continue;
        };
        let keep_child = keep.and_then(|k| k.children.get(pe));
        // An item the applier never owned as a whole (only fields inside it) is never deleted.
        let kept = keep_child.is_some_and(|k| k.member) || !last_child.member;
        if kept {
            prune(item, last_child, keep_child, &at.item(pe));
        }
        retained.push(kept);
    }
    let mut retained = retained.into_iter();
    items.retain(|_| retained.next().unwrap_or(true));
}

// ---------------------------------------------------------------------------------------------------
// Conflicts
// ---------------------------------------------------------------------------------------------------

/// Takes the fields this write changes away from every other manager; without `force`, a manager
/// losing a field is a conflict instead. (Shared fields with an unchanged value are not changed.)
fn take_changed_fields(entries: &mut Vec<Entry>, diff: &Diff, force: bool) -> ApiResult<()> {
    let changed = diff.changed();
    if !force {
        let mut conflicts: Vec<(&Entry, Vec<Vec<PathElement>>)> = entries
            .iter()
            .map(|e| (e, e.fields.intersection(&changed).paths()))
            .filter(|(_, paths)| !paths.is_empty())
            .collect();
        if !conflicts.is_empty() {
            conflicts.sort_by(|(a, _), (b, _)| a.identity().cmp(&b.identity()));
            return Err(conflict_error(&conflicts));
        }
    }
    for entry in entries.iter_mut() {
        entry.fields.difference(&changed);
        entry.fields.difference(&diff.removed);
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(())
}

/// The 409 the API server sends: one cause per field, and a message naming managers and paths.
fn conflict_error(conflicts: &[(&Entry, Vec<Vec<PathElement>>)]) -> ApiError {
    let count: usize = conflicts.iter().map(|(_, paths)| paths.len()).sum();
    let causes: Vec<FieldCause> = conflicts
        .iter()
        .flat_map(|(entry, paths)| {
            paths.iter().map(move |path| FieldCause {
                reason: "FieldManagerConflict",
                field: path_string(path),
                message: format!("conflict with {}", entry.describe()),
            })
        })
        .collect();
    let message = if count == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        )
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .flat_map(|(entry, paths)| {
                let header = format!("conflicts with {}:", entry.describe());
                std::iter::once(header).chain(paths.iter().map(|p| format!("- {}", path_string(p))))
            })
            .collect();
        format!("Apply failed with {count} conflicts: {}", lines.join("\n"))
    };
    let mut error = ApiError::new(409, "Conflict", message);
    error.causes = causes;
    error
}

// ---------------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------------

/// One `metadata.managedFields` entry, identified by (manager, operation, subresource).
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn new(
        manager: &str,
        operation: &str,
        api_version: String,
        time: Option<String>,
        subresource: Option<&str>,
        fields: FieldSet,
    ) -> Self {
        Entry {
            manager: manager.into(),
            operation: operation.into(),
            api_version,
            time,
            subresource: subresource.map(String::from),
            fields,
        }
    }

    fn identity(&self) -> (&str, &str, Option<&str>) {
        (&self.manager, &self.operation, self.subresource.as_deref())
    }

    fn parse(value: &Value) -> Entry {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(String::from);
        Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_default(),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: value.get("fieldsV1").map(FieldSet::from_fields_v1).unwrap_or_default(),
        }
    }

    /// Field order as the API server serializes `ManagedFieldsEntry`.
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("manager".into(), json!(self.manager));
        out.insert("operation".into(), json!(self.operation));
        out.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            out.insert("time".into(), json!(time));
        }
        out.insert("fieldsType".into(), json!("FieldsV1"));
        out.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            out.insert("subresource".into(), json!(subresource));
        }
        Value::Object(out)
    }

    /// `"kubectl" with subresource "status" using apps/v1`, as conflict messages name managers
    /// (only updaters carry a version: appliers are the same manager whatever version they use).
    fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            out.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

fn read_entries(object: &Value) -> Vec<Entry> {
    let entries = object.pointer("/metadata/managedFields").and_then(Value::as_array);
    entries.into_iter().flatten().map(Entry::parse).collect()
}

/// Like the API server, a write that sets managedFields itself (kubectl's upgrade from client-side
/// apply, or `[{}]` to clear them) is taken at its word. Otherwise, and for every subresource write,
/// the stored entries carry on, so clients that drop managedFields cannot erase ownership.
fn requested_entries(new: &Value, subresource: Option<&str>) -> Option<Vec<Entry>> {
    let requested = new.pointer("/metadata/managedFields")?.as_array()?;
    if subresource.is_some() || requested.is_empty() || !requested.iter().all(Value::is_object) {
        return None;
    }
    Some(requested.iter().map(Entry::parse).collect())
}

fn take_entry(entries: &mut Vec<Entry>, manager: &str, operation: &str, subresource: Option<&str>) -> Option<Entry> {
    let index = entries
        .iter()
        .position(|e| e.identity() == (manager, operation, subresource))?;
    Some(entries.remove(index))
}

/// Stores the entries as the last metadata field, sorted like the API server: Apply before Update,
/// then by time, manager, apiVersion and subresource.
fn write_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let Some(object) = object.as_object_mut() else {
        return;
    };
    if entries.is_empty() && !object.contains_key("metadata") {
        return;
    }
    let metadata = object.entry("metadata").or_insert_with(|| json!({}));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    metadata.shift_remove("managedFields");
    if !entries.is_empty() {
        metadata.insert("managedFields".into(), entries.iter().map(Entry::to_json).collect());
    }
}

// ---------------------------------------------------------------------------------------------------
// Request preparation
// ---------------------------------------------------------------------------------------------------

/// Validates the body and returns the configuration to merge: nulls mean "not specified".
fn applied_config(applied: &Value) -> ApiResult<Value> {
    match applied.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) if entries.is_empty() => {}
        Some(_) => return Err(ApiError::bad_request("metadata.managedFields must be nil")),
    }
    if !applied.is_object() {
        return Err(ApiError::bad_request("apply patch must be a JSON object"));
    }
    Ok(without_nulls(&without_managed_fields(applied)))
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.shift_remove("managedFields");
    }
    object
}

/// Keyed list items must carry their keys (and be unique) for apply to know which item is which.
fn check_keys(value: &Value, at: &At) -> Result<(), String> {
    match value {
        Value::Object(map) => map
            .iter()
            .try_for_each(|(name, child)| check_keys(child, &at.field(name))),
        Value::Array(items) => {
            let list_type = at.list_type();
            if list_type == ListType::Atomic {
                return Ok(());
            }
            let pes = item_elements(items, &list_type).map_err(|e| format!("{}: {e}", path_string(&at.path)))?;
            pes.iter()
                .zip(items)
                .try_for_each(|(pe, item)| check_keys(item, &at.item(pe)))
        }
        _ => Ok(()),
    }
}

/// The API server's wording when an applied configuration does not fit the type's structure.
fn typed_patch_error(config: &Value, reason: &str) -> ApiError {
    let text = |pointer: &str| config.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let name = match text("/metadata/namespace") {
        "" => text("/metadata/name").to_string(),
        namespace => format!("{namespace}/{}", text("/metadata/name")),
    };
    ApiError::bad_request(format!(
        "failed to create typed patch object ({name}; {}, Kind={}): {reason}",
        text("/apiVersion"),
        text("/kind")
    ))
}

fn api_version_of(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::structure::BuiltinStructure;
    use super::*;
    use proptest::prelude::*;

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:05:00Z";
    const T3: &str = "2025-01-01T00:10:00Z";
    const GITSYNC: &str = "sluice-gitsync";

    /// A Deployment config; an empty spec is left out because applying `spec: {}` would own it.
    fn deployment(spec: Value) -> Value {
        let mut object = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        object["metadata"] = json!({"name": "web", "namespace": "default"});
        if spec != json!({}) {
            object["spec"] = spec;
        }
        object
    }

    fn with_labels(mut object: Value, labels: Value) -> Value {
        object["metadata"]["labels"] = labels;
        object
    }

    fn run(live: Option<&Value>, config: &Value, manager: &str, force: bool, now: &str) -> ApiResult<Value> {
        apply(live, config, manager, force, &BuiltinStructure, now, None)
    }

    fn update(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
        let mut new = new.clone();
        track_update(old, &mut new, manager, &BuiltinStructure, now, None);
        new
    }

    fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        object["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn fields(object: &Value, manager: &str, operation: &str) -> Value {
        entry(object, manager, operation)
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }

    fn containers(names_images: &[(&str, &str)]) -> Value {
        let items: Vec<Value> = names_images
            .iter()
            .map(|(n, i)| json!({"name": n, "image": i}))
            .collect();
        json!({"template": {"spec": {"containers": items}}})
    }

    #[test]
    fn create_via_apply_records_an_apply_entry() {
        let config = deployment(json!({"replicas": 2}));
        let created = run(None, &config, GITSYNC, false, T1).unwrap();
        assert_eq!(created["spec"]["replicas"], 2);
        assert_eq!(created["metadata"]["name"], "web");
        assert_eq!(
            created["metadata"]["managedFields"],
            json!([{
                "manager": GITSYNC, "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
            }])
        );
    }

    #[test]
    fn fields_v1_encoding_of_a_small_deployment() {
        let config = with_labels(
            deployment(json!({
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1", "ports": [{"containerPort": 80}]}]},
                },
            })),
            json!({"app": "web"}),
        );
        let created = run(None, &config, GITSYNC, false, T1).unwrap();
        let expected = concat!(
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"#,
            r#""f:spec":{"f:replicas":{},"f:selector":{"f:matchLabels":{"f:app":{}}},"#,
            r#""f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"#,
            r#""f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{},"#,
            r#""f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#,
        );
        assert_eq!(fields(&created, GITSYNC, "Apply").to_string(), expected);
    }

    #[test]
    fn fields_v1_round_trips() {
        let raw = json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}},
            "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}});
        assert_eq!(
            FieldSet::from_fields_v1(&raw).to_fields_v1().to_string(),
            raw.to_string()
        );
    }

    #[test]
    fn reapply_adds_and_removes_labels() {
        let first = run(
            None,
            &with_labels(deployment(json!({})), json!({"a": "1", "b": "2"})),
            GITSYNC,
            false,
            T1,
        );
        let first = first.unwrap();
        let second = run(
            Some(&first),
            &with_labels(deployment(json!({})), json!({"a": "1", "c": "3"})),
            GITSYNC,
            false,
            T2,
        );
        let second = second.unwrap();
        assert_eq!(second["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(
            fields(&second, GITSYNC, "Apply"),
            json!({"f:metadata": {"f:labels": {"f:a": {}, "f:c": {}}}})
        );
        assert_eq!(entry(&second, GITSYNC, "Apply").unwrap()["time"], T2);

        // Dropping every label removes the map itself, but never the server's metadata.
        let third = run(Some(&second), &deployment(json!({"replicas": 1})), GITSYNC, false, T3).unwrap();
        assert!(third["metadata"].get("labels").is_none());
        assert_eq!(third["metadata"]["name"], "web");
        assert_eq!(third["metadata"]["namespace"], "default");
    }

    #[test]
    fn two_managers_share_a_field_with_the_same_value() {
        let a = run(
            None,
            &deployment(json!({"replicas": 3, "paused": false})),
            "a",
            false,
            T1,
        )
        .unwrap();
        let shared = run(Some(&a), &deployment(json!({"replicas": 3})), "b", false, T2).unwrap();
        assert_eq!(
            fields(&shared, "a", "Apply"),
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
        );
        assert_eq!(fields(&shared, "b", "Apply"), json!({"f:spec": {"f:replicas": {}}}));

        // `a` stops managing replicas: the value stays because `b` still owns it.
        let dropped = run(Some(&shared), &deployment(json!({"paused": false})), "a", false, T3).unwrap();
        assert_eq!(dropped["spec"]["replicas"], 3);
        assert_eq!(fields(&dropped, "a", "Apply"), json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(fields(&dropped, "b", "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    }

    #[test]
    fn conflict_is_a_409_worded_like_the_api_server() {
        let created = update(
            None,
            &deployment(json!({"replicas": 1, "paused": false})),
            "kubectl-client-side-apply",
            T1,
        );
        let err = run(Some(&created), &deployment(json!({"replicas": 3})), GITSYNC, false, T2).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "Conflict"));
        assert_eq!(
            err.message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
        );
        assert_eq!(
            err.causes,
            vec![FieldCause {
                reason: "FieldManagerConflict",
                field: ".spec.replicas".into(),
                message: r#"conflict with "kubectl-client-side-apply" using apps/v1"#.into(),
            }]
        );
        assert_eq!(err.to_status()["details"]["causes"][0]["field"], ".spec.replicas");
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let a = update(None, &deployment(json!({"replicas": 1, "paused": false})), "edit", T1);
        let b = run(
            Some(&a),
            &with_labels(deployment(json!({})), json!({"app": "x"})),
            "other",
            false,
            T1,
        )
        .unwrap();
        let config = with_labels(deployment(json!({"replicas": 2, "paused": true})), json!({"app": "y"}));
        let err = run(Some(&b), &config, GITSYNC, false, T2).unwrap_err();
        assert_eq!(
            err.message,
            "Apply failed with 3 conflicts: conflicts with \"edit\" using apps/v1:\n- .spec.paused\n- .spec.replicas\n\
             conflicts with \"other\":\n- .metadata.labels.app"
        );
        assert_eq!(err.causes.len(), 3);
        assert_eq!(err.causes[2].message, r#"conflict with "other""#);
    }

    #[test]
    fn force_moves_conflicting_fields_to_the_applier() {
        let object = deployment(json!({"replicas": 1, "paused": false}));
        let created = update(None, &object, "kubectl-client-side-apply", T1);
        // `lone` shares replicas (same value) and owns nothing else.
        let shared = run(Some(&created), &deployment(json!({"replicas": 1})), "lone", false, T1);
        let config = deployment(json!({"replicas": 3}));
        let forced = run(Some(&shared.unwrap()), &config, GITSYNC, true, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let gitsync = fields(&forced, GITSYNC, "Apply");
        assert_eq!(gitsync, json!({"f:spec": {"f:replicas": {}}}));
        let client_side = fields(&forced, "kubectl-client-side-apply", "Update");
        assert_eq!(client_side, json!({"f:spec": {"f:paused": {}}}));
        // A manager left owning nothing loses its entry; Apply entries sort before Update entries.
        assert!(entry(&forced, "lone", "Apply").is_none());
        let operations: Vec<&Value> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["operation"])
            .collect();
        assert_eq!(operations, [&json!("Apply"), &json!("Update")]);
    }

    #[test]
    fn an_update_that_sets_managed_fields_is_honoured() {
        let applied = run(None, &deployment(json!({"replicas": 3})), GITSYNC, false, T1).unwrap();
        // `[{}]` is the documented way to clear managedFields.
        let mut cleared = applied.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        let cleared = update(Some(&applied), &cleared, "kubectl-patch", T2);
        assert!(cleared["metadata"].get("managedFields").is_none());
        // A client that drops managedFields (or sends an empty list) cannot erase ownership.
        let mut dropped = applied.clone();
        dropped["metadata"]["managedFields"] = json!([]);
        let dropped = update(Some(&applied), &dropped, "kubectl-replace", T2);
        assert_eq!(
            dropped["metadata"]["managedFields"],
            applied["metadata"]["managedFields"]
        );
    }

    #[test]
    fn dropped_container_is_removed_while_another_managers_container_stays() {
        let both = run(
            None,
            &deployment(containers(&[("app", "app:1"), ("sidecar", "proxy:1")])),
            GITSYNC,
            false,
            T1,
        );
        let extra = run(
            Some(&both.unwrap()),
            &deployment(containers(&[("extra", "debug:1")])),
            "other",
            false,
            T1,
        );
        let extra = extra.unwrap();
        let names = |o: &Value| -> Vec<String> {
            let items = o["spec"]["template"]["spec"]["containers"].as_array().unwrap();
            items.iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names(&extra), ["app", "sidecar", "extra"]);

        let pruned = run(
            Some(&extra),
            &deployment(containers(&[("app", "app:2")])),
            GITSYNC,
            false,
            T2,
        )
        .unwrap();
        assert_eq!(names(&pruned), ["app", "extra"]);
        assert_eq!(pruned["spec"]["template"]["spec"]["containers"][0]["image"], "app:2");
        let owned = &fields(&pruned, GITSYNC, "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert_eq!(
            owned,
            &json!({"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}})
        );
    }

    #[test]
    fn container_owned_by_another_manager_survives_being_dropped() {
        let both = run(
            None,
            &deployment(containers(&[("app", "app:1"), ("sidecar", "proxy:1")])),
            GITSYNC,
            false,
            T1,
        );
        let shared = run(
            Some(&both.unwrap()),
            &deployment(containers(&[("sidecar", "proxy:1")])),
            "mesh",
            false,
            T1,
        );
        let kept = run(
            Some(&shared.unwrap()),
            &deployment(containers(&[("app", "app:1")])),
            GITSYNC,
            false,
            T2,
        )
        .unwrap();
        let list = kept["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1], json!({"name": "sidecar", "image": "proxy:1"}));
    }

    #[test]
    fn update_takes_ownership_and_a_later_reapply_conflicts() {
        let config = deployment(json!({"replicas": 3, "paused": false}));
        let applied = run(None, &config, GITSYNC, false, T1).unwrap();
        let mut patched = applied.clone();
        patched["spec"]["replicas"] = json!(5);
        let patched = update(Some(&applied), &patched, "kubectl-edit", T2);
        assert_eq!(
            fields(&patched, "kubectl-edit", "Update"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(entry(&patched, "kubectl-edit", "Update").unwrap()["time"], T2);
        assert_eq!(fields(&patched, GITSYNC, "Apply"), json!({"f:spec": {"f:paused": {}}}));

        let err = run(Some(&patched), &config, GITSYNC, false, T3).unwrap_err();
        assert_eq!(
            err.message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas"#
        );
    }

    #[test]
    fn update_on_create_owns_everything_and_a_noop_update_changes_nothing() {
        let object = with_labels(deployment(json!({"replicas": 1})), json!({"app": "web"}));
        let created = update(None, &object, "kubectl-create", T1);
        assert_eq!(
            fields(&created, "kubectl-create", "Update"),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}})
        );
        let again = update(Some(&created), &created, "someone-else", T2);
        assert_eq!(again, created);
    }

    #[test]
    fn update_removing_a_field_strips_it_from_every_owner() {
        let applied = run(
            None,
            &deployment(json!({"replicas": 3, "paused": false})),
            GITSYNC,
            false,
            T1,
        )
        .unwrap();
        let mut removed = applied.clone();
        removed["spec"].as_object_mut().unwrap().shift_remove("paused");
        let removed = update(Some(&applied), &removed, "kubectl-edit", T2);
        assert_eq!(
            fields(&removed, GITSYNC, "Apply"),
            json!({"f:spec": {"f:replicas": {}}})
        );
        // Removing fields gives the writer nothing to own, so it gets no entry.
        assert!(entry(&removed, "kubectl-edit", "Update").is_none());
    }

    #[test]
    fn status_updates_are_tracked_per_subresource() {
        let created = update(None, &deployment(json!({"replicas": 1})), "kubectl-create", T1);
        let mut with_status = created.clone();
        with_status["status"] = json!({"readyReplicas": 1});
        track_update(
            Some(&created),
            &mut with_status,
            "sim",
            &BuiltinStructure,
            T2,
            Some("status"),
        );
        let status_entry = entry(&with_status, "sim", "Update").unwrap();
        assert_eq!(status_entry["subresource"], "status");
        assert_eq!(status_entry["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
    }

    #[test]
    fn reapplying_the_same_config_is_a_noop_that_keeps_the_time() {
        let config = with_labels(deployment(containers(&[("app", "app:1")])), json!({"app": "web"}));
        let first = run(None, &config, GITSYNC, false, T1).unwrap();
        let second = run(Some(&first), &config, GITSYNC, false, T2).unwrap();
        assert_eq!(second, first);
        assert_eq!(entry(&second, GITSYNC, "Apply").unwrap()["time"], T1);
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let mut a = deployment(json!({}));
        a["metadata"]["finalizers"] = json!(["a.example/x"]);
        let mut b = deployment(json!({}));
        b["metadata"]["finalizers"] = json!(["b.example/y"]);
        let first = run(None, &a, "a", false, T1).unwrap();
        let both = run(Some(&first), &b, "b", false, T2).unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["a.example/x", "b.example/y"]));
        assert_eq!(
            fields(&both, "b", "Apply"),
            json!({"f:metadata": {"f:finalizers": {"v:\"b.example/y\"": {}}}})
        );
    }

    #[test]
    fn null_in_the_config_means_not_specified() {
        let first = run(
            None,
            &deployment(json!({"replicas": 2, "paused": true})),
            GITSYNC,
            false,
            T1,
        )
        .unwrap();
        let second = run(
            Some(&first),
            &deployment(json!({"replicas": 2, "paused": null})),
            GITSYNC,
            false,
            T2,
        )
        .unwrap();
        assert!(second["spec"].get("paused").is_none());
        assert_eq!(fields(&second, GITSYNC, "Apply"), json!({"f:spec": {"f:replicas": {}}}));
    }

    #[test]
    fn managed_fields_in_the_body_are_rejected() {
        let mut config = deployment(json!({}));
        config["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        let err = run(None, &config, GITSYNC, false, T1).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "metadata.managedFields must be nil")
        );
        config["metadata"]["managedFields"] = json!([]);
        assert!(run(None, &config, GITSYNC, false, T1).is_ok());
    }

    #[test]
    fn keyed_item_without_its_key_is_a_bad_request() {
        let config = deployment(json!({"template": {"spec": {"containers": [{"image": "x"}]}}}));
        let err = run(None, &config, GITSYNC, false, T1).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: \
             element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
    }

    fn arb_config() -> impl Strategy<Value = Value> {
        let labels = prop::collection::btree_map("[a-c]", "[xy]", 0..3);
        let images = prop::collection::btree_map("[a-c]", "img:[12]", 0..3);
        let finalizers = prop::collection::btree_set("f/[ab]", 0..2);
        (labels, prop::option::of(0..3i64), images, finalizers).prop_map(|(labels, replicas, images, fins)| {
            let mut config = with_labels(deployment(json!({})), json!(labels));
            if !fins.is_empty() {
                config["metadata"]["finalizers"] = json!(fins);
            }
            if let Some(replicas) = replicas {
                config["spec"]["replicas"] = json!(replicas);
            }
            if !images.is_empty() {
                let pairs: Vec<(&str, &str)> = images.iter().map(|(n, i)| (n.as_str(), i.as_str())).collect();
                config["spec"]["template"] = containers(&pairs)["template"].clone();
            }
            config
        })
    }

    proptest! {
        #[test]
        fn applying_the_same_config_twice_gives_the_same_object(
            base in arb_config(), config in arb_config(), force in any::<bool>(),
        ) {
            let live = run(None, &base, "other", false, T1).unwrap();
            if let Ok(once) = run(Some(&live), &config, GITSYNC, force, T2) {
                let twice = run(Some(&once), &config, GITSYNC, force, T3).unwrap();
                prop_assert_eq!(twice, once);
            }
        }
    }
}
