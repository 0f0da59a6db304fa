-- Customers with their order history and web behaviour: reads two intermediates fed by
-- different sources (orders and the clickstream).
select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.country,
    c.signup_date,
    coalesce(o.order_count, 0) as order_count,
    coalesce(o.returned_count, 0) as returned_count,
    o.first_order_date,
    o.last_order_date,
    coalesce(o.lifetime_net_amount, 0) as lifetime_net_amount,
    coalesce(s.session_count, 0) as session_count,
    coalesce(s.converted_sessions, 0) as converted_sessions,
    s.last_session_date
from {{ ref('stg_customers') }} as c
left join {{ ref('int_customer_orders') }} as o using (customer_id)
left join {{ ref('int_customer_sessions') }} as s using (customer_id)
