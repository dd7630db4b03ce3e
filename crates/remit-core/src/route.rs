//! The route table: method + path template, or MCP method + tool name, to action, resource
//! and sensitivity. DESIGN: unmapped routes are sensitive.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::mcp::{McpError, McpMessage};
use crate::names::{ActionName, ResourceType};
use crate::path::CanonicalPath;

/// The resource type of every request no route maps.
pub const UNMAPPED_RESOURCE_TYPE: &str = "Route";
/// The resource type of MCP servers.
pub const MCP_RESOURCE_TYPE: &str = "McpServer";
/// Longest captured path parameter or resource id.
pub const MAX_RESOURCE_ID_LEN: usize = 1024;

/// A resource: a Cedar entity type and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    /// The entity type, e.g. `Ticket`.
    #[serde(rename = "type")]
    pub rtype: ResourceType,
    /// The entity id, e.g. `42`.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Lit(String),
    Param(String),
}

/// A resource template such as `Ticket::{id}` or `Repo::{repo}/builds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTemplate {
    rtype: ResourceType,
    parts: Vec<TemplatePart>,
}

impl ResourceTemplate {
    /// Parses `Type::id-template`; `{name}` in the id stands for a captured path parameter.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (t, id) = s
            .split_once("::")
            .ok_or_else(|| format!("`{s}` is not a resource template: write `Type::{{param}}`"))?;
        let rtype = ResourceType::parse(t).map_err(|e| e.to_string())?;
        let mut parts = Vec::new();
        let mut rest = id;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Lit(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in resource template `{s}`"))?;
            let name = &rest[open + 1..open + close];
            if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(format!("`{{{name}}}` is not a parameter name in `{s}`"));
            }
            parts.push(TemplatePart::Param(name.to_owned()));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unopened `}}` in resource template `{s}`"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Lit(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(format!("resource template `{s}` has an empty id"));
        }
        Ok(Self { rtype, parts })
    }

    /// The parameters the template uses.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Param(n) => Some(n.as_str()),
            TemplatePart::Lit(_) => None,
        })
    }

    /// The entity type.
    pub fn rtype(&self) -> &ResourceType {
        &self.rtype
    }

    fn render(&self, params: &[(String, String)]) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Lit(s) => out.push_str(s),
                TemplatePart::Param(n) => {
                    if let Some((_, v)) = params.iter().find(|(k, _)| k == n) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

/// One HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template (`/tickets/{id}`).
    pub path: String,
    /// The action it maps to.
    pub action: ActionName,
    /// The resource it maps to.
    pub resource: ResourceTemplate,
    /// Whether it is sensitive.
    pub sensitive: bool,
}

/// Most declared arguments on one tool.
pub const MAX_TOOL_ARGUMENTS: usize = 32;
/// Longest string argument handed to policy.
pub const MAX_ARGUMENT_LEN: usize = 4096;

/// The type a tool argument is declared with, so policies can read it typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A JSON string.
    String,
    /// A JSON integer that fits in 64 bits.
    Long,
    /// A JSON boolean.
    Bool,
}

impl ArgType {
    /// Parses `string`, `long` or `bool`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "string" => Ok(Self::String),
            "long" => Ok(Self::Long),
            "bool" => Ok(Self::Bool),
            other => Err(format!(
                "`{other}` is not an argument type: use string, long or bool"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Long => "an integer",
            Self::Bool => "a boolean",
        }
    }
}

/// A declared tool argument's value, as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A string.
    String(String),
    /// An integer.
    Long(i64),
    /// A boolean.
    Bool(bool),
}

/// One mapped MCP tool, prompt or resource on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTool {
    /// The tool's or prompt's name, or the resource URI prefix.
    pub name: String,
    /// The action a `tools/call`, `prompts/get` or `resources/read` of it maps to.
    pub action: ActionName,
    /// Whether using it is sensitive.
    pub sensitive: bool,
    /// Declared arguments (tools only), handed to policy as `context.arguments`.
    pub arguments: BTreeMap<String, ArgType>,
    /// Whether using it changes anything (tools unless declared `destructive = false`).
    pub destructive: bool,
}

/// One MCP server endpoint (Streamable HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// The server's name; resources are `McpServer::<name>`.
    pub name: String,
    /// The endpoint path, e.g. `/mcp/docs`.
    pub path: String,
    /// The action for lifecycle and listing messages (`initialize`, `ping`,
    /// notifications, `*/list`) and for opening or closing the stream.
    pub session_action: ActionName,
    /// Its mapped tools by name.
    pub tools: HashMap<String, McpTool>,
    /// Its mapped prompts by name.
    pub prompts: HashMap<String, McpTool>,
    /// Its mapped resources by URI prefix (the longest prefix wins).
    pub resources: Vec<McpTool>,
}

/// What the route table knows about an action, for the policy schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionInfo {
    /// Resource types the action applies to.
    pub resource_types: BTreeSet<ResourceType>,
    /// Path parameters every route of this action captures.
    pub params: BTreeSet<String>,
    /// Declared tool arguments of this action.
    pub arguments: BTreeMap<String, ArgType>,
}

/// What a request asks to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The action.
    pub action: ActionName,
    /// The resource.
    pub resource: ResourceRef,
    /// Whether the action or resource is sensitive.
    pub sensitive: bool,
    /// Captured path parameters.
    pub params: Vec<(String, String)>,
    /// Declared tool arguments present in the call, typed.
    pub arguments: Vec<(String, ArgValue)>,
    /// The MCP message, for MCP endpoints.
    pub mcp: Option<McpMessage>,
    /// The route that matched, e.g. `GET /tickets/{id}` or `MCP docs tools/call search_docs`.
    pub route: Option<String>,
    /// Whether the request writes: an HTTP method that is not safe (RFC 9110 §9.2.1), a
    /// destructive MCP tool, or anything unmapped.
    pub writes: bool,
}

/// Whether an HTTP method is safe (RFC 9110 §9.2.1): it only reads.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Why a request's scope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// An MCP endpoint got a body that is not one MCP message.
    #[error(transparent)]
    Mcp(#[from] McpError),
    /// An MCP endpoint got a POST without a body.
    #[error("a POST to an MCP endpoint needs a JSON-RPC body")]
    McpBodyMissing,
    /// A declared tool argument has the wrong type or is too long.
    #[error("tool argument `{name}` must be {want}")]
    BadArgument {
        /// The argument.
        name: String,
        /// What it must be.
        want: &'static str,
    },
    /// A captured parameter is too long to be a resource id.
    #[error("a path parameter is longer than {MAX_RESOURCE_ID_LEN} bytes")]
    ParamTooLong,
}

/// Routes by method and path, and MCP servers by path.
#[derive(Debug, Default)]
pub struct RouteTable {
    http: HashMap<String, matchit::Router<usize>>,
    routes: Vec<HttpRoute>,
    mcp: HashMap<String, McpServer>,
    actions: BTreeMap<ActionName, ActionInfo>,
}

/// MCP methods that only set up, keep alive or list: they map to the server's session action.
fn is_session_method(m: &str) -> bool {
    matches!(
        m,
        "initialize"
            | "ping"
            | "tools/list"
            | "resources/list"
            | "resources/templates/list"
            | "prompts/list"
            | "logging/setLevel"
    ) || m.starts_with("notifications/")
}

impl RouteTable {
    /// Adds an HTTP route. Fails on a template matchit rejects or one that conflicts.
    pub fn add_http(&mut self, route: HttpRoute) -> Result<(), String> {
        let idx = self.routes.len();
        self.http
            .entry(route.method.clone())
            .or_default()
            .insert(route.path.clone(), idx)
            .map_err(|e| format!("path template `{}`: {e}", route.path))?;
        self.note_action(
            &route.action,
            route.resource.rtype(),
            route.resource.params(),
            &BTreeMap::new(),
        )?;
        self.routes.push(route);
        Ok(())
    }

    /// Adds an MCP server endpoint.
    pub fn add_mcp(&mut self, server: McpServer) -> Result<(), String> {
        let path = CanonicalPath::parse(&server.path)
            .map_err(|e| format!("path `{}`: {e}", server.path))?;
        if path.decoded() != server.path || path.query().is_some() {
            return Err(format!(
                "path `{}` is not canonical: write `{}`",
                server.path,
                path.decoded()
            ));
        }
        if self.mcp.contains_key(&server.path) {
            return Err(format!("two MCP servers use path `{}`", server.path));
        }
        let rtype = ResourceType::parse(MCP_RESOURCE_TYPE).map_err(|e| e.to_string())?;
        self.note_action(
            &server.session_action,
            &rtype,
            std::iter::empty(),
            &BTreeMap::new(),
        )?;
        for entry in server
            .tools
            .values()
            .chain(server.prompts.values())
            .chain(&server.resources)
        {
            self.note_action(&entry.action, &rtype, std::iter::empty(), &entry.arguments)?;
        }
        self.mcp.insert(server.path.clone(), server);
        Ok(())
    }

    fn note_action<'a>(
        &mut self,
        action: &ActionName,
        rtype: &ResourceType,
        params: impl Iterator<Item = &'a str>,
        arguments: &BTreeMap<String, ArgType>,
    ) -> Result<(), String> {
        if action.is_unmapped() {
            return Err("`unmapped` is reserved for requests no route maps".into());
        }
        let params: BTreeSet<String> = params.map(str::to_owned).collect();
        match self.actions.get_mut(action) {
            Some(info) => {
                if info.params != params {
                    return Err(format!(
                        "action `{action}` is used by routes with different parameters ({:?} and {:?}); give them the same parameters or different actions",
                        info.params, params
                    ));
                }
                if &info.arguments != arguments {
                    return Err(format!(
                        "action `{action}` is used by tools with different declared arguments; give them the same arguments or different actions"
                    ));
                }
                info.resource_types.insert(rtype.clone());
            }
            None => {
                let mut info = ActionInfo {
                    params,
                    arguments: arguments.clone(),
                    ..ActionInfo::default()
                };
                info.resource_types.insert(rtype.clone());
                self.actions.insert(action.clone(), info);
            }
        }
        Ok(())
    }

    /// Every mapped action and what it applies to.
    pub fn actions(&self) -> &BTreeMap<ActionName, ActionInfo> {
        &self.actions
    }

    /// Every HTTP route.
    pub fn http_routes(&self) -> &[HttpRoute] {
        &self.routes
    }

    /// Every MCP server.
    pub fn mcp_servers(&self) -> impl Iterator<Item = &McpServer> {
        self.mcp.values()
    }

    /// Every resource type any route can produce, plus the built-in ones.
    pub fn resource_types(&self) -> BTreeSet<String> {
        let mut set: BTreeSet<String> = self
            .actions
            .values()
            .flat_map(|a| a.resource_types.iter().map(|t| t.to_string()))
            .collect();
        set.insert(UNMAPPED_RESOURCE_TYPE.to_owned());
        set.insert(MCP_RESOURCE_TYPE.to_owned());
        set
    }

    /// Maps a request to its scope. Unmapped requests get the sensitive `unmapped` action.
    pub fn resolve(
        &self,
        method: &str,
        path: &CanonicalPath,
        body: Option<&[u8]>,
    ) -> Result<Scope, ScopeError> {
        if let Some(server) = self.mcp.get(path.decoded()) {
            return self.resolve_mcp(server, method, body);
        }
        if let Some(m) = self
            .http
            .get(method)
            .and_then(|r| r.at(path.decoded()).ok())
        {
            let route = &self.routes[*m.value];
            let mut params = Vec::with_capacity(m.params.len());
            for (k, v) in m.params.iter() {
                if v.len() > MAX_RESOURCE_ID_LEN {
                    return Err(ScopeError::ParamTooLong);
                }
                params.push((k.to_owned(), v.to_owned()));
            }
            let id = route.resource.render(&params);
            return Ok(Scope {
                action: route.action.clone(),
                resource: ResourceRef {
                    rtype: route.resource.rtype.clone(),
                    id,
                },
                sensitive: route.sensitive,
                params,
                arguments: Vec::new(),
                mcp: None,
                route: Some(format!("{} {}", route.method, route.path)),
                writes: !is_safe_method(method),
            });
        }
        Ok(unmapped(format!("{method} {}", path.encoded()), None))
    }

    fn resolve_mcp(
        &self,
        server: &McpServer,
        method: &str,
        body: Option<&[u8]>,
    ) -> Result<Scope, ScopeError> {
        let resource = || ResourceRef {
            rtype: ResourceType::parse(MCP_RESOURCE_TYPE)
                .unwrap_or_else(|_| unreachable!("constant")),
            id: server.name.clone(),
        };
        let session = |mcp: Option<McpMessage>, what: &str| Scope {
            action: server.session_action.clone(),
            resource: resource(),
            sensitive: false,
            params: Vec::new(),
            arguments: Vec::new(),
            mcp,
            route: Some(format!("MCP {} {what}", server.name)),
            writes: false,
        };
        match method {
            "GET" => return Ok(session(None, "stream")),
            "DELETE" => return Ok(session(None, "session end")),
            "POST" => {}
            other => return Ok(unmapped(format!("{other} {}", server.path), None)),
        }
        let body = body
            .filter(|b| !b.is_empty())
            .ok_or(ScopeError::McpBodyMissing)?;
        let msg = McpMessage::parse(body)?;
        let Some(m) = msg.method.clone() else {
            return Ok(session(Some(msg), "response"));
        };
        if is_session_method(&m) {
            return Ok(session(Some(msg), &m));
        }
        let name = msg.name.clone().unwrap_or_default();
        let entry = match m.as_str() {
            "tools/call" => server.tools.get(&name),
            "prompts/get" => server.prompts.get(&name),
            "resources/read" => server
                .resources
                .iter()
                .filter(|r| name.starts_with(r.name.as_str()))
                .max_by_key(|r| r.name.len()),
            _ => None,
        };
        let what = format!(
            "MCP {} {} {}",
            server.name,
            m.escape_default(),
            name.escape_default()
        );
        match entry {
            Some(e) => Ok(Scope {
                action: e.action.clone(),
                resource: resource(),
                sensitive: e.sensitive,
                params: Vec::new(),
                arguments: typed_arguments(&e.arguments, msg.arguments.as_ref())?,
                mcp: Some(msg),
                route: Some(what),
                writes: e.destructive,
            }),
            None => Ok(unmapped(what.trim_end().to_owned(), Some(msg))),
        }
    }
}

/// The declared arguments present in a call, typed; undeclared ones are not read.
fn typed_arguments(
    declared: &BTreeMap<String, ArgType>,
    given: Option<&serde_json::Value>,
) -> Result<Vec<(String, ArgValue)>, ScopeError> {
    let Some(serde_json::Value::Object(given)) = given else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(declared.len());
    for (name, ty) in declared {
        let Some(v) = given.get(name) else { continue };
        let bad = || ScopeError::BadArgument {
            name: name.clone(),
            want: ty.name(),
        };
        let value = match (ty, v) {
            (ArgType::String, serde_json::Value::String(s)) if s.len() <= MAX_ARGUMENT_LEN => {
                ArgValue::String(s.clone())
            }
            (ArgType::Long, serde_json::Value::Number(n)) => {
                ArgValue::Long(n.as_i64().ok_or_else(bad)?)
            }
            (ArgType::Bool, serde_json::Value::Bool(b)) => ArgValue::Bool(*b),
            _ => return Err(bad()),
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

fn unmapped(what: String, mcp: Option<McpMessage>) -> Scope {
    let mut id = what;
    if id.len() > MAX_RESOURCE_ID_LEN {
        let mut cut = MAX_RESOURCE_ID_LEN;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    Scope {
        action: ActionName::unmapped(),
        resource: ResourceRef {
            rtype: ResourceType::parse(UNMAPPED_RESOURCE_TYPE)
                .unwrap_or_else(|_| unreachable!("constant")),
            id,
        },
        sensitive: true,
        params: Vec::new(),
        arguments: Vec::new(),
        mcp,
        route: None,
        writes: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.add_http(HttpRoute {
            method: "GET".into(),
            path: "/tickets/{id}".into(),
            action: ActionName::parse("tickets.read").unwrap(),
            resource: ResourceTemplate::parse("Ticket::{id}").unwrap(),
            sensitive: true,
        })
        .unwrap();
        t
    }

    #[test]
    fn maps_and_captures() {
        let t = table();
        let s = t
            .resolve("GET", &CanonicalPath::parse("/tickets/42").unwrap(), None)
            .unwrap();
        assert_eq!(s.action.as_str(), "tickets.read");
        assert_eq!(s.resource.id, "42");
        assert_eq!(s.params, vec![("id".to_owned(), "42".to_owned())]);
    }

    #[test]
    fn unmapped_is_sensitive() {
        let t = table();
        let s = t
            .resolve(
                "DELETE",
                &CanonicalPath::parse("/tickets/42").unwrap(),
                None,
            )
            .unwrap();
        assert!(s.action.is_unmapped());
        assert!(s.sensitive);
        assert_eq!(s.resource.id, "DELETE /tickets/42");
    }

    #[test]
    fn templates_parse() {
        assert!(ResourceTemplate::parse("Ticket").is_err());
        assert!(ResourceTemplate::parse("ticket::{id}").is_err());
        assert!(ResourceTemplate::parse("Ticket::{id").is_err());
        assert!(ResourceTemplate::parse("Ticket::{}").is_err());
        assert!(ResourceTemplate::parse("Ticket::").is_err());
        let t = ResourceTemplate::parse("Build::{repo}/{id}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["repo", "id"]);
    }
}
