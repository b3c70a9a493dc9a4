//! The policy document as operators write it (YAML) or send it (JSON): plain serde DTOs.
//!
//! Every struct denies unknown fields, so a misspelt key is an error that names the field rather
//! than a silently ignored line. Nothing here is checked beyond its shape: addresses, ports, names
//! and references are strings and numbers until [`crate::policy::validate`] turns the document
//! into a [`crate::policy::ValidatedPolicy`]. Field names are camelCase (Kubernetes style).
//!
//! Invariant: serialising a DTO is deterministic (maps are `BTreeMap`, empty optional lists are
//! skipped), which is what makes the canonical form, and so the revision hash, stable.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "septa.io/v1";
/// The only accepted `kind`.
pub const KIND: &str = "Policy";

/// A whole policy document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    /// Must be `septa.io/v1` ([`API_VERSION`]).
    pub api_version: String,
    /// Must be `Policy` ([`KIND`]).
    pub kind: String,
    /// Name and description.
    pub metadata: Metadata,
    /// Zones, conduits and defaults.
    pub spec: Spec,
}

/// Identifies a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyMetadata)]
pub struct Metadata {
    /// DNS-label style name (`[a-z0-9-]`, at most 63 characters).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form labels on the policy itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The body of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicySpec)]
pub struct Spec {
    /// What happens to traffic no conduit matches.
    #[serde(default)]
    pub defaults: Defaults,
    /// Named address lists that zones can reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_sets: Vec<IpSet>,
    /// Labelled hosts that zone selectors pick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Groups of endpoints.
    pub zones: Vec<Zone>,
    /// Services allowed (or explicitly denied) between zones, in precedence order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conduits: Vec<Conduit>,
}

/// Policy-wide defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyDefaults)]
pub struct Defaults {
    /// The action for unmatched traffic; only `deny` exists (default deny is not negotiable).
    #[serde(default)]
    pub action: DefaultAction,
    /// Mode of zones and of the final default-deny when nothing narrower says otherwise.
    #[serde(default)]
    pub mode: ModeName,
}

/// The action for traffic no conduit matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Drop (or, in monitor mode, report) unmatched traffic.
    #[default]
    Deny,
}

/// `monitor` or `enforce`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[schema(as = PolicyMode)]
pub enum ModeName {
    /// Apply the action.
    #[default]
    Enforce,
    /// Report what the action would do; forward the flow.
    Monitor,
}

/// A named list of addresses or prefixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpSet {
    /// Name referenced by `zones[].ipSets`.
    pub name: String,
    /// Addresses (`10.0.0.5`) or prefixes (`10.0.0.0/24`), IPv4 or IPv6.
    pub addresses: Vec<String>,
}

/// A labelled host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyEndpoint)]
pub struct Endpoint {
    /// Unique name.
    pub name: String,
    /// One IPv4 or IPv6 address.
    pub address: String,
    /// Labels matched by zone selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A zone: the union of its subnets, the addresses of its IP sets and the selected endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyZone)]
pub struct Zone {
    /// Unique name (`any` is reserved for "every address").
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Mode of traffic to and from this zone; `defaults.mode` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeName>,
    /// Prefixes such as `10.20.0.0/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Names of `spec.ipSets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_sets: Vec<String>,
    /// Kubernetes-style selector over `spec.endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
}

/// A Kubernetes-style label selector: every `matchLabels` pair and every expression must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One set-based requirement (`key In [a, b]`, `key Exists`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// Values for `In`/`NotIn`; must be empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Kubernetes selector operators, spelt as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// Traffic between zones: from every `from` zone to every `to` zone, for the listed services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyConduit)]
pub struct Conduit {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Source zones (`any` for every address).
    pub from: Vec<String>,
    /// Destination zones (`any` for every address).
    pub to: Vec<String>,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub action: ConduitAction,
    /// Overrides the mode inherited from the zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeName>,
    /// Matched services; at least one.
    pub services: Vec<Service>,
}

/// A conduit's action.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ConduitAction {
    /// Forward matching traffic.
    #[default]
    Allow,
    /// Drop matching traffic, whatever any allow conduit says.
    Deny,
}

/// One service of a conduit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PolicyService)]
pub struct Service {
    /// `tcp`, `udp`, `icmp` (ICMPv4 or ICMPv6 by address family) or `any`.
    pub proto: ProtoName,
    /// Destination ports (`443` or `"8000-8080"`); empty means every port. TCP/UDP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Source ports, same syntax; empty means every port. TCP/UDP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<PortSpec>,
    /// ICMP message types; empty means every type. ICMP only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icmp_types: Vec<u16>,
    /// L7 constraint (e.g. `modbus: {functions: [read_coils]}`; grammar in `policy::l7`),
    /// checked field by field in validation; a service with `l7` compiles to an inspect
    /// action, never to a plain allow. Free-form in the OpenAPI document: an object with one
    /// protocol key (`modbus`, `dnp3`, `s7`, `s7comm`, `cip`, `enip`, `bacnet`, `iec104`,
    /// `opcua`) whose fields that protocol's grammar defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub l7: Option<serde_json::Value>,
}

/// Protocol names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtoName {
    /// IP protocol 6.
    Tcp,
    /// IP protocol 17.
    Udp,
    /// IP protocol 1 for IPv4 flows, 58 for IPv6 flows.
    Icmp,
    /// Every protocol.
    Any,
}

/// A port or port range as written: a number (`443`) or a string (`"443"`, `"8000-8080"`).
/// Range checks happen in validation so that every bad port is reported, not only the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// Written as a number.
    Number(i64),
    /// Written as a string.
    Text(String),
}

impl utoipa::PartialSchema for PortSpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .description(Some("A port (`443`).")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("A port or a range (`\"443\"`, `\"8000-8080\"`).")),
            )
            .description(Some(
                "A port or port range as written: a number or a string. Ranges are checked in validation.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PortSpec {}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortSpec::Number(n) => s.serialize_i64(*n),
            PortSpec::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range such as \"8000-8080\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortSpec, E> {
                Ok(PortSpec::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Ok(PortSpec::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortSpec, E> {
                Ok(PortSpec::Text(v.to_owned()))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}
