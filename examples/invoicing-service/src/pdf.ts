import PDFDocument from 'pdfkit';
import type { Invoice, LineItem } from './repo/invoices.ts';

const money = (cents: number, currency: string) => `${(cents / 100).toFixed(2)} ${currency}`;

/**
 * The invoice document: one A4 page (more when the line items do not fit) with the invoice's number, customer,
 * status, issue date, line items and total. Rendered with pdfkit (MIT, maintained), its standard Helvetica font
 * (no font file to ship). The PDF's information dictionary names the invoice and its customer (Title, Subject),
 * which tools show without parsing page content; tests read them from the bytes. `now` is the creation date.
 */
export function renderInvoicePdf(invoice: Invoice, items: readonly LineItem[], now: Date = new Date()): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const doc = new PDFDocument({
      size: 'A4',
      margin: 50,
      info: { Title: `Invoice ${invoice.id}`, Subject: invoice.customer, Author: 'tenantwall invoicing service', CreationDate: now },
    });
    const chunks: Buffer[] = [];
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
    doc.font('Helvetica-Bold').fontSize(20).text('Invoice');
    doc.font('Helvetica').fontSize(10).moveDown(0.5);
    doc.text(`Number: ${invoice.id}`);
    doc.text(`Customer: ${invoice.customer}`);
    doc.text(`Issued: ${invoice.issued_at ?? '-'}`);
    doc.moveDown();
    if (items.length > 0) {
      doc.font('Helvetica-Bold').text('Line items');
      doc.font('Helvetica');
      for (const it of items) doc.text(`${it.position}. ${it.description}  ${it.quantity} x ${money(it.unit_amount_cents, invoice.currency)} = ${money(it.amount_cents, invoice.currency)}`);
      doc.moveDown();
    }
    doc.font('Helvetica-Bold').fontSize(12).text(`Total: ${money(invoice.amount_cents, invoice.currency)}`);
    doc.end();
  });
}
