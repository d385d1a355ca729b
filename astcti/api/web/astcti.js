var AstCti;
