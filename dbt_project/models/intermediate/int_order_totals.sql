select
    order_id,
    count(*) as item_count,
    sum(quantity) as units,
    sum(line_amount) as items_amount,
    max(loaded_at) as loaded_at
from {{ ref('int_order_items_priced') }}
group by order_id
