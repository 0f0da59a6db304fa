select
    s.session_date,
    count(*) as sessions,
    count(*) filter (where s.converted) as converted_sessions,
    coalesce(any_value(v.page_views), 0) as page_views,
    coalesce(any_value(o.orders), 0) as orders
from {{ ref('fct_sessions') }} as s
left join (
    select event_date, count(*) as page_views from {{ ref('fct_page_views') }} group by 1
) as v on v.event_date = s.session_date
left join (
    select order_date, count(*) as orders from {{ ref('fct_orders') }} group by 1
) as o on o.order_date = s.session_date
group by 1
