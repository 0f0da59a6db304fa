select
    order_date,
    count(*) as orders,
    sum(items_amount) as gross_amount,
    sum(refunded_amount) as refunded_amount,
    sum(net_amount) as net_amount
from {{ ref('fct_orders') }}
group by order_date
