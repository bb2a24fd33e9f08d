//! The console's words in English and Chinese, the Chinese in the seeds' own
//! vocabulary (终端节点, 终端节点服务, 白名单, 待接受...). The language is the `pl_lang`
//! cookie's (set by `?lang=`), else the first of ours in `Accept-Language`.

use axum::http::HeaderMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        if s.starts_with("zh") {
            Some(Lang::Zh)
        } else if s.starts_with("en") {
            Some(Lang::En)
        } else {
            None
        }
    }
    /// The cookie's choice, else `Accept-Language`'s first language we speak (by its
    /// order and q-values), else English.
    pub fn of(headers: &HeaderMap, cookie: Option<&str>) -> Lang {
        if let Some(l) = cookie.and_then(Lang::parse) {
            return l;
        }
        let accept = headers.get(axum::http::header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in accept.split(',').take(16).enumerate() {
            let mut bits = part.split(';');
            let Some(lang) = bits.next().and_then(Lang::parse) else { continue };
            let q = bits.find_map(|b| b.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                best = Some((q, i, lang));
            }
        }
        best.map_or(Lang::En, |(_, _, l)| l)
    }
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }
    /// The word for `key`; a key without a row is shown as itself (a test checks every
    /// key the pages use has one).
    pub fn t(self, key: &'static str) -> &'static str {
        match WORDS.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, zh)) => match self {
                Lang::En => en,
                Lang::Zh => zh,
            },
            None => key,
        }
    }
}

/// (key, English, Chinese).
pub const WORDS: &[(&str, &str, &str)] = &[
    ("title", "privatelink console", "privatelink 控制台"),
    ("language", "中文", "English"),
    ("sign_in", "Sign in", "登录"),
    ("sign_out", "Sign out", "退出"),
    ("token", "API token", "API 令牌"),
    ("token_help", "A token from `privatelink token create`; the console can do what the token can.", "由 `privatelink token create` 创建的令牌；控制台的权限与令牌相同。"),
    ("bad_token", "This token was not accepted", "令牌无效"),
    ("signed_in_as", "Signed in as", "当前账号"),
    ("operator", "operator", "运维管理员"),
    ("read_only", "read-only", "只读"),
    ("my_services", "Endpoint services", "终端节点服务"),
    ("available", "Available services", "可用服务"),
    ("my_endpoints", "Endpoints", "终端节点"),
    ("nodes", "Nodes", "节点"),
    ("vpcs", "VPCs", "专有网络"),
    ("events", "Events", "事件"),
    ("grafana", "Grafana dashboard", "Grafana 仪表盘"),
    ("create_service", "Create endpoint service", "创建终端节点服务"),
    ("create_endpoint", "Create endpoint", "创建终端节点"),
    ("edit", "Edit", "修改"),
    ("delete", "Delete", "删除"),
    ("cancel", "Cancel", "取消"),
    ("save", "Save", "保存"),
    ("create", "Create", "创建"),
    ("confirm_delete", "Delete %s? This cannot be undone.", "确定删除 %s 吗？此操作不可恢复。"),
    ("force_delete", "Also delete its connected endpoints", "同时删除已连接的终端节点"),
    ("name", "Name", "名称"),
    ("id", "ID", "ID"),
    ("state", "State", "状态"),
    ("owner", "Account", "账号"),
    ("vpc", "VPC", "专有网络"),
    ("description", "Description", "描述"),
    ("backends", "Backends", "后端服务"),
    ("backends_help", "One per line: ADDRESS [zone=ZONE] [weight=N]", "每行一个：地址 [zone=可用区] [weight=权重]"),
    ("ports", "Port mappings", "端口映射"),
    ("ports_help", "One per line: PROTOCOL ENDPOINT_PORT:SERVICE_PORT (tcp 80:8080)", "每行一个：协议 终端节点端口:服务端口（tcp 80:8080）"),
    ("whitelist", "Whitelist", "白名单"),
    ("whitelist_help", "Account IDs separated by spaces or commas; * for every account", "账号 ID，用空格或逗号分隔；* 表示所有账号"),
    ("auto_accept", "Accept connections automatically", "自动接受终端节点连接"),
    ("connection_limit", "Connection limit per endpoint", "每个终端节点的连接数上限"),
    ("health_check", "Health check", "健康检查"),
    ("health_port", "Health check port", "健康检查端口"),
    ("health_path", "Health check path (HTTP)", "健康检查路径（HTTP）"),
    ("dns_name", "Private DNS name", "私有域名"),
    ("full_name", "Service name", "服务名称"),
    ("zones", "Zones", "可用区"),
    ("connections", "Endpoint connections", "终端节点连接"),
    ("live_connections", "Live connections", "当前连接数"),
    ("accept", "Accept", "接受"),
    ("reject", "Reject", "拒绝"),
    ("health", "Backend health", "后端健康状态"),
    ("up", "healthy", "健康"),
    ("down", "unhealthy", "异常"),
    ("unchecked", "not checked", "未检查"),
    ("address", "Address", "地址"),
    ("address_help", "Empty: chosen automatically in the VPC", "留空：在专有网络中自动分配"),
    ("zone_ips", "Zone addresses", "可用区地址"),
    ("zone_ips_help", "One per line: ZONE ADDRESS", "每行一个：可用区 地址"),
    ("security_groups", "Security groups", "安全组"),
    ("security_groups_help", "Names separated by spaces or commas; none allows everything", "安全组名称，用空格或逗号分隔；不填则全部允许"),
    ("bandwidth", "Bandwidth limit", "带宽上限"),
    ("bandwidth_help", "100Mbps, 1Gbps...; empty: unlimited", "例如 100Mbps、1Gbps；留空：不限"),
    ("private_dns", "Private DNS names", "私有域名解析"),
    ("service", "Endpoint service", "终端节点服务"),
    ("domain_names", "Domain names", "域名"),
    ("copy", "Copy", "复制"),
    ("copied", "Copied", "已复制"),
    ("snat_ips", "SNAT addresses", "SNAT 地址"),
    ("graphs", "Last hour", "最近一小时"),
    ("conn_graph", "Live connections and limit", "当前连接数与上限"),
    ("rate_graph", "New connections/s and drops/s", "新建连接数/秒与丢包数/秒"),
    ("bytes_graph", "Bytes/s in and out", "入/出 字节/秒"),
    ("drops", "Drops by reason", "丢包原因"),
    ("none", "None", "无"),
    ("zone", "Zone", "可用区"),
    ("slice", "Slice", "分片"),
    ("buddy", "Buddy", "伙伴节点"),
    ("flows", "Flows", "流"),
    ("routes", "Announced routes", "发布的路由"),
    ("last_heartbeat", "Last heartbeat", "最近心跳"),
    ("this_node", "this node", "本节点"),
    ("kind", "Kind", "类型"),
    ("subject", "Subject", "对象"),
    ("time", "Time", "时间"),
    ("message", "Message", "内容"),
    ("filter", "Filter", "筛选"),
    ("nothing", "Nothing here yet.", "暂无数据。"),
    ("pages", "Pages", "分页"),
    ("previous", "Previous", "上一页"),
    ("next", "Next", "下一页"),
    ("pendingAcceptance", "pending acceptance", "待接受"),
    ("accepted", "accepted", "已接受"),
    ("rejected", "rejected", "已拒绝"),
    ("revoked", "revoked", "已撤销"),
    ("failed", "The request failed", "请求失败"),
    ("changed_meanwhile", "It changed since this page was opened; reload and try again.", "该资源在此期间已被修改，请刷新后重试。"),
    ("managed_by_spec", "managed by the operator's spec (read-only here)", "由运维配置文件管理（此处只读）"),
    ("not_found", "Not found", "未找到"),
    ("stale_form", "This form expired or did not come from this console; it was refused.", "表单已过期或并非来自本控制台，已拒绝。"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_we_speak() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(axum::http::header::ACCEPT_LANGUAGE, v.parse().unwrap());
            m
        };
        assert_eq!(Lang::of(&h("zh-CN,zh;q=0.9,en;q=0.8"), None), Lang::Zh);
        assert_eq!(Lang::of(&h("fr, en;q=0.5, zh;q=0.7"), None), Lang::Zh);
        assert_eq!(Lang::of(&h("de, fr"), None), Lang::En);
        assert_eq!(Lang::of(&h("zh;q=0, en"), None), Lang::En);
        assert_eq!(Lang::of(&h("zh-CN"), Some("en")), Lang::En, "the cookie wins");
        assert_eq!(Lang::of(&HeaderMap::new(), Some("garbage")), Lang::En);
    }

    #[test]
    fn every_key_the_pages_use_has_both_words() {
        let pages = [include_str!("pages.rs"), include_str!("operator.rs"), include_str!("forms.rs"), include_str!("mod.rs")].concat();
        let mut missing = Vec::new();
        for chunk in pages.split(".t(\"").skip(1) {
            let key = chunk.split('"').next().unwrap_or("");
            if !WORDS.iter().any(|(k, en, zh)| *k == key && !en.is_empty() && !zh.is_empty()) {
                missing.push(key.to_string());
            }
        }
        assert!(missing.is_empty(), "keys without words: {missing:?}");
        let mut keys: Vec<_> = WORDS.iter().map(|w| w.0).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(n, keys.len(), "a key has two rows");
    }
}
