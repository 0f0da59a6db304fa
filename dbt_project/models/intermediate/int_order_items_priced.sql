select
    i.order_item_id,
    i.order_id,
    i.product_id,
    p.category,
    i.quantity,
    i.unit_price,
    i.line_amount,
    greatest(i.loaded_at, p.loaded_at) as loaded_at
from {{ ref('stg_order_items') }} as i
left join {{ ref('stg_products') }} as p using (product_id)
