"""The page's one stylesheet, inlined in every answer: light or dark as the device prefers, one column on a phone."""

from __future__ import annotations

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#9aa3af")  # the last: the rest

CSS = (
    """
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#1d2330;--mute:#667085;--line:#e2e5ea;
--ok:#2e7d32;--warn:#b86e00;--over:#c62828}
@media (prefers-color-scheme:dark){:root{--bg:#121419;--card:#1b1f26;--fg:#e6e8eb;--mute:#98a2b3;--line:#2c313a;
--ok:#5cb85f;--warn:#e0a030;--over:#ef5350}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main,footer{max-width:72rem;margin:0 auto;padding:.75rem 1rem}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.25rem 1rem}
header form{margin-left:auto}
h1{font-size:1.2rem;margin:0}
h2{font-size:1rem;margin:0 0 .5rem}
main{display:grid;gap:1rem;padding-top:0;grid-template-columns:repeat(auto-fit,minmax(min(100%,22rem),1fr))}
section{background:var(--card);border:1px solid var(--line);border-radius:.5rem;padding:.75rem 1rem;min-width:0}
.wide{grid-column:1/-1}
.scroll{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{padding:.3rem .4rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--mute);font-weight:500}
.n{text-align:right;white-space:nowrap}
.name{overflow-wrap:anywhere}
small,.sub,footer{color:var(--mute)}
.big{font-size:1.5rem;font-weight:600}
.gauge{display:block;width:100%;height:.45rem;margin:.25rem 0}
.track{fill:var(--line)}.fine{fill:var(--ok)}.warn{fill:var(--warn)}.over{fill:var(--over)}
td.warn{color:var(--warn)}td.over{color:var(--over);font-weight:600}
.chart{display:block;width:100%;height:auto;max-height:18rem}
.grid{stroke:var(--line)}.axis{fill:var(--mute);font-size:10px}
.legend{list-style:none;padding:0;margin:.4rem 0 0;display:flex;flex-wrap:wrap;gap:.2rem .9rem;font-size:.85rem}
.legend i{display:inline-block;width:.7rem;height:.7rem;border-radius:2px;margin-right:.3rem}
.caps{display:grid;gap:.6rem}
ul.list{list-style:none;padding:0;margin:0}ul.list li{padding:.35rem 0;border-bottom:1px solid var(--line)}
button{font:inherit;font-size:.85rem;padding:.15rem .6rem;border:1px solid var(--line);border-radius:.35rem;
background:var(--bg);color:var(--fg);cursor:pointer}
button.go{border-color:var(--ok);color:var(--ok)}
.tag{font-size:.75rem;padding:0 .35rem;border-radius:.3rem;color:#fff;background:var(--mute);white-space:nowrap}
.tag.ok{background:var(--ok)}.tag.warning,.tag.paused{background:var(--warn)}.tag.critical,.tag.bad{background:var(--over)}
.notice{max-width:72rem;margin:0 auto 1rem;padding:.6rem 1rem;border-left:4px solid var(--ok);background:var(--card)}
.notice.bad{border-color:var(--over)}
@media (max-width:40rem){.wf thead{display:none}.wf tr{display:grid;grid-template-columns:1fr 1fr auto;
border-bottom:1px solid var(--line)}.wf td{border:0;text-align:left}.wf td:first-child{grid-column:1/-1;font-weight:600}
.wf td:nth-child(2)::before{content:"today "}.wf td:nth-child(3)::before{content:"month "}
.wf td:nth-child(n+2)::before{color:var(--mute);font-size:.8rem}}
.login{max-width:22rem;margin:15vh auto;display:grid;gap:.6rem}
.login input{font:inherit;padding:.4rem;border:1px solid var(--line);border-radius:.35rem;background:var(--card);
color:var(--fg)}
"""
    + "".join(f".c{i}{{fill:{colour}}}.k{i}{{background:{colour}}}" for i, colour in enumerate(PALETTE))
    + "\n"
)
