select
    s.session_id,
    s.customer_id,
    c.country,
    s.session_date,
    s.session_start_at,
    s.session_end_at,
    s.events,
    s.page_views,
    s.converted,
    s.landing_page
from {{ ref('int_sessions') }} as s
left join {{ ref('stg_customers') }} as c using (customer_id)
