-- The board's daily numbers: four layers below the sources, reads both lineages.
select
    r.order_date as day,
    r.orders,
    r.net_amount,
    f.sessions,
    f.converted_sessions,
    case when f.sessions > 0 then r.orders / f.sessions end as orders_per_session
from {{ ref('fct_daily_revenue') }} as r
left join {{ ref('mart_conversion_funnel') }} as f on f.session_date = r.order_date
