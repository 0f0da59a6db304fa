-- the latest state of each order; loaded_at is when that state landed
select
    order_id,
    customer_id,
    order_date,
    status,
    updated_at,
    loaded_at
from {{ ref('stg_order_status_changes') }}
qualify row_number() over (partition by order_id order by updated_at desc, status desc) = 1
