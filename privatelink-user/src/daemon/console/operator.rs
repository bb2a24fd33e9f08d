//! The screens that show the gateway rather than one service or endpoint: VPCs (an
//! account's own, every one for the operator) with their drops, the operator's nodes,
//! and the events, filtered.

use super::{
    pages::{drops_table, enc, layout, live, nothing},
    Console, Ctx, Page,
};
use crate::daemon::api::*;
use crate::model::state::Event;
use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;

pub async fn vpcs(ctx: Ctx, State(c): State<Console>) -> Page {
    let (vpcs, _): (Vec<TenantVpc>, _) = c.get(&ctx, "/v1/vpcs").await?;
    let t = |k| ctx.lang.t(k);
    let body = html! {
        @if vpcs.is_empty() { (nothing(&ctx)) }
        @for v in &vpcs {
            section.card {
                h2 { (v.name) " " small { code { (v.cidr) } } }
                p { (t("owner")) ": " (v.owner.as_deref().unwrap_or(t("operator"))) " · " (t("my_endpoints")) ": " (v.endpoints.len()) }
                h3 { (t("drops")) }
                (drops_table(&ctx, &v.drops))
            }
        }
    };
    Ok(layout(&ctx, "/console/vpcs", t("vpcs"), body))
}

pub async fn nodes(ctx: Ctx, State(c): State<Console>) -> Page {
    let (nodes, _): (Vec<NodeView>, _) = c.get(&ctx, "/v1/nodes").await?;
    let t = |k| ctx.lang.t(k);
    let body = html! {
        @if let Some(g) = &c.grafana { p { a #grafana href=(g) rel="noopener" { (t("grafana")) } } }
        div.scroll { table {
            thead { tr { th { (t("name")) } th { (t("zone")) } th { (t("state")) } th { (t("buddy")) } th { (t("slice")) } th { (t("snat_ips")) } th { (t("flows")) } th { (t("routes")) } th { (t("last_heartbeat")) } } }
            tbody { @for n in &nodes { tr {
                td { (n.name) @if n.this_node { " " small { "(" (t("this_node")) ")" } } }
                td { (n.zone.as_deref().unwrap_or("—")) }
                td { span class={ "node " (n.state) } { (n.state) } }
                td { (n.buddy.as_deref().unwrap_or("—")) }
                td.num { (n.slice) }
                td { @for s in &n.snat_slices { code { (s) } " " } }
                td.num { (n.flows) }
                td { @for r in &n.announced { code { (r.address) "/32 (" (r.table) ")" } " " } @if !n.this_node { "—" } }
                td { @if let Some(h) = &n.last_heartbeat { (h.to_string()) } @else { "—" } }
            } } }
        } }
    };
    Ok(layout(&ctx, "/console/nodes", t("nodes"), body))
}

#[derive(Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
}

pub async fn events(ctx: Ctx, State(c): State<Console>, Query(f): Query<EventFilter>) -> Page {
    let (all, _): (Vec<Event>, _) = c.get(&ctx, "/v1/events").await?;
    let t = |k| ctx.lang.t(k);
    let shown: Vec<&Event> = all.iter().rev().filter(|e| e.kind.contains(f.kind.trim()) && e.subject.contains(f.subject.trim())).take(500).collect();
    let here = format!("/console/events?kind={}&subject={}", enc(&f.kind), enc(&f.subject));
    let body = html! {
        form.filters method="get" action="/console/events" {
            label for="kind" { (t("kind")) } input #kind name="kind" value=(f.kind);
            label for="subject" { (t("subject")) } input #subject name="subject" value=(f.subject);
            button type="submit" { (t("filter")) }
        }
        (live("events", &here, html! {
            @if shown.is_empty() { (nothing(&ctx)) } @else {
                div.scroll { table {
                    thead { tr { th { (t("time")) } th { (t("kind")) } th { (t("subject")) } th { (t("message")) } } }
                    tbody { @for e in &shown { tr { td { (e.at.to_string()) } td { code { (e.kind) } } td { (e.subject) } td { (e.message) } } } }
                } }
            }
        }))
    };
    Ok(layout(&ctx, &here, t("events"), body))
}
