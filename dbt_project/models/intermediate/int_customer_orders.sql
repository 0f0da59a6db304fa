select
    customer_id,
    count(*) as order_count,
    count(*) filter (where status = 'returned') as returned_count,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    sum(net_amount) as lifetime_net_amount
from {{ ref('int_orders_enriched') }}
group by customer_id
